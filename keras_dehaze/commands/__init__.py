"""Subcommands of the ``keras-dehaze`` command line (``keras_dehaze.cli`` builds the parser).

``keras_dehaze.cli`` imports a module only when its command runs; TensorFlow is imported by a
command only when the model it runs needs it."""
