"""Depth estimators behind one interface, and dataset depth for clean images.

``estimator(images [B, H, W, 3] in [0, 1]) -> depth [B, H, W, 1]`` in [0, 1] (relative, larger =
farther), with ``differentiable``, ``haze_invariant``, ``name`` and ``describe()``:

- `DCPPriorDepth` ("dcp_prior"): weight-free d = -ln(t) from the dark channel prior, in TF ops.
  A HAZE prior for hazy images, not a learned depth (on a dehazed image it measures residual haze).
- `PyDNetDepth` ("pydnet", or the path of ``pydnet_plus_plus.tflite``): the PyDNet++ mobile
  depth network run by LiteRT (`keras_dehaze.depth.pydnet`); a learned scene depth, not
  differentiable. `PyDNetTFLite` is its numpy-only runner (no TensorFlow needed).
  `PyDNetGraphDepth` (``differentiable=True``): the same file replayed with TF ops
  (`keras_dehaze.depth.tflite_graph`), differentiable.
- `ModelFileDepth` (a path): a user-supplied pretrained network (SavedModel / .keras / .tflite),
  e.g. an exported Depth Anything V2; differentiable except for .tflite.
- dataset depth for the clean branch: `clean_depth_pairs` (RGB-D, Middlebury, SOTS pairs).
- `keras_dehaze.depth.evaluate`: Spearman agreement of estimators with dataset depth.

The numpy-only parts (dataset depth, PyDNet++) import without TensorFlow; the TF estimators
are imported on first use of their names (PEP 562).

Example:
    >>> estimator = build_depth_estimator("dcp_prior")
    >>> depth = estimator(hazy_batch)  # doctest: +SKIP
"""

import importlib

from keras_dehaze.depth.base import DepthEstimator, normalize_depth
from keras_dehaze.depth.dataset import clean_depth_pairs, middlebury_depth, rgbd_depth
from keras_dehaze.depth.pydnet import PyDNetDepth, PyDNetError, PyDNetGraphDepth, PyDNetTFLite, is_pydnet_file

OFF = ("", "none", "off")
PYDNET = "pydnet"

_LAZY = {"ModelFileDepth": "keras_dehaze.depth.model_file", "DCPPriorDepth": "keras_dehaze.depth.prior"}


def __getattr__(name):
    """Imports the TensorFlow estimators on first access."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_depth_estimator(spec="dcp_prior", output="depth", input_size=None, mean=None, std=None,
                          channels_first=False, differentiable=False):
    """"dcp_prior" -> `DCPPriorDepth`; "none"/"" -> None; "pydnet" -> `PyDNetDepth` (file from
    ``$KERAS_DEHAZE_PYDNET`` or ~/.keras/models/); anything else is a model-file path, and a
    ``.tflite`` recognised as PyDNet++ (by its input and output tensors) gets `PyDNetDepth`.

    The preprocessing arguments apply to generic model files only (see `ModelFileDepth`);
    `output` also applies to PyDNet++ ("depth": raw output read as depth, the measured
    orientation; "disparity": flipped). ``differentiable=True`` gives PyDNet++ as
    `PyDNetGraphDepth` (replayed with TF ops) instead of LiteRT; other specs are unchanged.
    """
    if spec is None or str(spec).lower() in OFF:
        return None
    if spec == "dcp_prior":
        from keras_dehaze.depth.prior import DCPPriorDepth

        return DCPPriorDepth()
    pydnet = PyDNetGraphDepth if differentiable else PyDNetDepth
    if str(spec).lower() == PYDNET:
        return pydnet(None, output=output)
    if is_pydnet_file(spec) and not (input_size or mean or std or channels_first):
        return pydnet(spec, output=output)
    from keras_dehaze.depth.model_file import ModelFileDepth

    return ModelFileDepth(spec, output=output, input_size=input_size or None, mean=mean or None,
                          std=std or None, channels_first=channels_first)


__all__ = [
    "DCPPriorDepth",
    "DepthEstimator",
    "ModelFileDepth",
    "PyDNetDepth",
    "PyDNetError",
    "PyDNetGraphDepth",
    "PyDNetTFLite",
    "build_depth_estimator",
    "clean_depth_pairs",
    "is_pydnet_file",
    "middlebury_depth",
    "normalize_depth",
    "rgbd_depth",
]
