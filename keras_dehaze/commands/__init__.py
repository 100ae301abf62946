"""Subcommands of the ``keras-dehaze`` command line (``keras_dehaze.cli`` builds the parser).

Each module imports only argparse-level code at import time; TensorFlow is imported by a
command only when the model it runs needs it."""
