"""Loads a script of training/ as a module (training/ is not a package), for the tests."""

import importlib.util
import os

TRAINING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "training")


def load_training_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(TRAINING, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
