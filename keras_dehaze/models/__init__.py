"""Dehazing networks and the name -> builder registry used by configs (``model: aecrnet``)."""

import functools

from keras_dehaze.models.aecrnet import AECRNet
from keras_dehaze.models.corun import CORUN, CORUN_PRESETS, corun_from_preset
from keras_dehaze.models.lkdnet import LKDNet
from keras_dehaze.models.msdehazenet import MSDehazeNet

# Explicit registry (no folder scanning): config name -> builder.
MODELS = {
    "aecrnet": AECRNet,
    "corun": CORUN,
    "corun_compact": functools.partial(corun_from_preset, "corun_compact"),
    "lkdnet": LKDNet,
    "msdehazenet": MSDehazeNet,
}


def build_model(name, **kwargs):
    """Builds a registered network by name; unknown names list the known ones."""
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"Unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[key](**kwargs)


__all__ = ["AECRNet", "CORUN", "CORUN_PRESETS", "LKDNet", "MODELS", "MSDehazeNet", "build_model", "corun_from_preset"]
