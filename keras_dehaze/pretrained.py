"""Presets: pretrained networks shipped inside the package (``keras_dehaze/weights/``).

A preset is data, as in keras-hub: ``<name>.json`` names the architecture (a key of
``keras_dehaze.models.MODELS``) and its arguments, the weights file ``<name>.npz``, what it was
trained on, the figures measured with it, and for third-party weights the licence and
attribution (the licence text ships beside it, ``license_file``). An int8 ``.tflite`` for edge
devices may ship beside it (``int8_tflite``). A preset name works wherever a model is named:
``keras-dehaze dehaze --model``, ``eval --model``, ``model.pretrained`` in training configs,
and as a distillation teacher.

Weights are stored in file order of ``model.get_weights()``, in float16 (half the size; the
rounding changes outputs far less than 0.01 dB) or float32 (``dtype`` in the record).
"""

import json
import os

import numpy as np

from keras_dehaze.atomic import atomic_open, atomic_write

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
AECRNET = "aecrnet_default"  # the bundled AE-CR-Net
DEFAULT = "lkdnet_s_mixed"  # what `keras-dehaze dehaze` uses without --model (see docs/model_zoo.md)
ALIASES = {"aecrnet": AECRNET, "default": DEFAULT}


def resolve(name):
    """A preset name or alias -> the preset name (unchanged if it is not an alias)."""
    return ALIASES.get(name, name)


def available():
    """Names of the bundled networks."""
    if not os.path.isdir(WEIGHTS_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(WEIGHTS_DIR) if f.endswith(".json"))


def is_preset(name):
    """True for a shipped preset name or one of its aliases."""
    return resolve(name) in available()


def metadata(name=DEFAULT):
    name = resolve(name)
    path = os.path.join(WEIGHTS_DIR, f"{name}.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no bundled network {name!r} (looked for {path}); bundled: {available() or 'none'}")
    with open(path) as f:
        return json.load(f)


def load_pretrained(name=DEFAULT, **overrides):
    """Builds the bundled network and loads its weights (float32). ``overrides`` change
    builder arguments that do not affect weights (e.g. input_shape, dcn_index_math)."""
    from keras_dehaze.models import build_model

    name = resolve(name)
    meta = metadata(name)
    weights_path = os.path.join(WEIGHTS_DIR, meta["weights"])
    if not os.path.exists(weights_path):
        raise FileNotFoundError(f"weights file of {name!r} is missing: {weights_path}")
    model = build_model(meta["model"], **{**meta["args"], **overrides})
    with np.load(weights_path) as data:
        weights = [data[f"w{i}"].astype(np.float32) for i in range(len(data.files))]
    model.set_weights(weights)
    return model


def update_metadata(name, **fields):
    """Adds or replaces fields of a preset's JSON record (e.g. the int8 file shipped beside it)."""
    name = resolve(name)
    meta = {**metadata(name), **fields}
    atomic_write(os.path.join(WEIGHTS_DIR, f"{name}.json"), json.dumps(meta, indent=2) + "\n")
    return meta


def export_pretrained(model, name, model_name, args, record, dtype="float16"):
    """Writes ``<name>.npz`` (weights in ``dtype``) and ``<name>.json`` into WEIGHTS_DIR."""
    os.makedirs(WEIGHTS_DIR, exist_ok=True)
    arrays = {f"w{i}": w.astype(dtype) for i, w in enumerate(model.get_weights())}
    with atomic_open(os.path.join(WEIGHTS_DIR, f"{name}.npz")) as f:
        np.savez_compressed(f, **arrays)
    meta = {"model": model_name, "args": args, "weights": f"{name}.npz", "dtype": dtype, **record}
    atomic_write(os.path.join(WEIGHTS_DIR, f"{name}.json"), json.dumps(meta, indent=2) + "\n")
    return meta
