"""Haze physics: the atmospheric scattering model, rehazy generation and the dark channel prior.

`scattering` holds batched, differentiable TF ops (training-time synthesis and rehazy);
`dcp` holds the NumPy/OpenCV dark-channel-prior baseline and haze-parameter helpers.

`scattering` (TensorFlow) is imported lazily, on first use of one of its names, so the DCP
baseline (``keras-dehaze dehaze --model dcp``) runs without loading TensorFlow.
"""

import importlib

from keras_dehaze.physics.dcp import (
    dark_channel,
    dehaze_dcp,
    depth_from_transmission,
    estimate_airlight,
    estimate_transmission,
    guided_filter,
    parse_sots_outdoor_name,
    recover_transmission_from_pair,
)

_SCATTERING = ("PRESETS", "recover_clear", "rehazy", "sample_haze_params", "sample_uniform", "synthesize_haze",
               "transmission")


def __getattr__(name):
    if name in _SCATTERING:
        return getattr(importlib.import_module("keras_dehaze.physics.scattering"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "transmission",
    "synthesize_haze",
    "rehazy",
    "recover_clear",
    "sample_uniform",
    "sample_haze_params",
    "dark_channel",
    "estimate_airlight",
    "estimate_transmission",
    "guided_filter",
    "dehaze_dcp",
    "depth_from_transmission",
    "recover_transmission_from_pair",
    "parse_sots_outdoor_name",
]
