"""Helpers shared by the subcommands."""

import sys


def load_model(spec, threads=None, tile=None, precision="float", accelerator="cpu"):
    """``keras_dehaze.inference.load_dehazer`` with its errors printed as one line (None then)."""
    from keras_dehaze.inference import ModelLoadError, load_dehazer

    try:
        return load_dehazer(spec, threads=threads, tile=tile, precision=precision, accelerator=accelerator)
    except (ModelLoadError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
