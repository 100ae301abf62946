"""The tests of keras-dehaze. Subfolders mirror the package (tests/layers <-> keras_dehaze/layers,
tests/edge <-> keras_dehaze/edge and edge/, tests/training <-> training/ and the experiment);
tests of top-level modules and whole-project suites sit here. Shared helpers:
``tests.layer_testing`` (checks every layer and network), ``tests.training_scripts``,
``tests.training.tiny_runs``, ``tests.lkdnet_reference``."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root
