"""Depth maps for CLEAN images from datasets: RGB-D sensors, Middlebury stereo, SOTS pairs.

The clean branch of the Rehazy trainer hazes clean images with the ASM, which needs their depth.
These loaders turn the ground truth of public datasets into relative depth maps in [0, 1]
(HxW float32, larger = farther, holes filled), the convention of the haze ranges:

- Middlebury (2003 ``<scene>_image_NN`` + ``<scene>_disp_NN.png``, disparity = value / 4;
  2006 ``<scene>L.<ext>`` + ``<scene>GT.png``, 8-bit disparity): 0 = unknown;
  depth = 1 / disparity (f * baseline is a global scale, removed by the normalisation).
- RGB-D frames (``color/<k>.jpg`` + ``depth/<k>.png``, uint16 millimetres; TUM
  ``<name>_color.png`` + ``<name>_depth.png``, uint16, metres = value / 5000): 0 = hole.
- SOTS / RESIDE pairs (``hazy/`` + ``clear/``): depth recovered by inverting the ASM on one
  hazy/clear pair per scene (`keras_dehaze.data.resynthesis.depth_from_pair`).
- prepared folders: ``<stem>_depth.png`` already normalised (written by
  ``training/prepare_clean_depth.py``), returned as paths.

Normalisation: d / (99th percentile of d), clipped to [0, 1] (as `depth_from_pair`). Holes are
filled from the surrounding valid depth (`fill_holes`); stereo occlusions are thus interpolated
between foreground and background rather than assigned to the background.
"""

import os
import re

import cv2
import numpy as np

from keras_dehaze.data.image_io import read_image
from keras_dehaze.data.pairing import DatasetError, _image_names, _subdirs, natural_key

KINDS = ("auto", "middlebury", "rgbd", "sots", "prepared")
_MB2003 = re.compile(r"^(?P<scene>.+)_image_(?P<view>\d+)$")
_MB2006 = re.compile(r"^(?P<scene>.+)L$")
_TUM = re.compile(r"^(?P<name>.+)_color$")


def _read_raw(path):
    """Single-channel integer map as float64, without the [0, 1] scaling of read_image."""
    data = np.fromfile(os.fspath(path), dtype=np.uint8)
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if raw is None:
        raise DatasetError(f"{path}: cannot decode the depth/disparity map.")
    if raw.ndim == 3:
        raw = raw[..., 0]
    return raw.astype(np.float64)


def fill_holes(depth, valid, max_iterations=10000):
    """Fills invalid pixels of an HxW depth map from the valid ones (grown inwards).

    Normalised convolution: each pass gives every hole pixel next to valid ones the mean of its
    valid 3x3 neighbours, until no hole is left. (cv2.inpaint is not used: on float32 maps with
    values far below 1 its Telea mode returned negative depths.)
    """
    depth = np.asarray(depth, np.float32)
    valid = np.asarray(valid, bool)
    if not valid.any():
        raise DatasetError("depth map has no valid pixel")
    filled = np.where(valid, depth, 0.0).astype(np.float32)
    mask = valid.astype(np.float32)
    for _ in range(max_iterations):
        if mask.all():
            break
        total = cv2.boxFilter(filled * mask, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        count = cv2.boxFilter(mask, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        grow = (mask == 0) & (count > 0)
        filled[grow] = total[grow] / count[grow]
        mask[grow] = 1.0
    return filled


def normalize_depth_map(depth, percentile=99.0):
    """d / percentile(d), clipped to [0, 1], float32."""
    depth = np.asarray(depth, np.float32)
    scale = float(np.percentile(depth, percentile))
    return np.clip(depth / max(scale, 1e-6), 0.0, 1.0).astype(np.float32)


def depth_from_disparity(disparity, scale=1.0, return_valid=False):
    """Relative depth in [0, 1] from a disparity map (0 = unknown): 1 / (disparity / scale).

    With ``return_valid``, returns (depth, valid mask of the measured pixels) instead.
    """
    disparity = np.asarray(disparity, np.float64) / float(scale)
    valid = disparity > 0
    depth = np.where(valid, 1.0 / np.maximum(disparity, 1e-9), 0.0)
    depth = normalize_depth_map(fill_holes(depth, valid))
    return (depth, valid) if return_valid else depth


def depth_from_sensor(raw, scale=1000.0, return_valid=False):
    """Relative depth in [0, 1] from a uint16 sensor depth map (0 = hole); scale: units per metre.

    With ``return_valid``, returns (depth, valid mask of the measured pixels) instead.
    """
    raw = np.asarray(raw, np.float64)
    valid = raw > 0
    depth = normalize_depth_map(fill_holes(raw / float(scale), valid))
    return (depth, valid) if return_valid else depth


def middlebury_depth(path, scale=None, return_valid=False):
    """Depth from a Middlebury disparity PNG (2003 ``_disp_NN``: value / 4; 2006 ``GT``: value)."""
    if scale is None:
        scale = 4.0 if "_disp_" in os.path.basename(path) else 1.0
    return depth_from_disparity(_read_raw(path), scale, return_valid)


def rgbd_depth(path, scale=None, return_valid=False):
    """Depth from a uint16 RGB-D map (TUM ``*_depth.png``: 5000 per metre; else millimetres)."""
    if scale is None:
        scale = 5000.0 if os.path.basename(path).lower().startswith("tum") else 1000.0
    return depth_from_sensor(_read_raw(path), scale, return_valid)


def _by_stem(folder):
    return {os.path.splitext(n)[0]: os.path.join(folder, n) for n in _image_names(folder)}


def _middlebury(folder, valid=False):
    files, pairs = _by_stem(folder), []
    for stem, path in sorted(files.items(), key=lambda kv: natural_key(kv[0])):
        m = _MB2003.match(stem)
        if m and f"{m['scene']}_disp_{m['view']}" in files:
            disp = files[f"{m['scene']}_disp_{m['view']}"]
            pairs.append((path, lambda p=disp: middlebury_depth(p, 4.0, valid)))
            continue
        m = _MB2006.match(stem)
        if m and f"{m['scene']}GT" in files:
            disp = files[f"{m['scene']}GT"]
            pairs.append((path, lambda p=disp: middlebury_depth(p, 1.0, valid)))
    return pairs


def _rgbd(folder, valid=False):
    pairs = []
    color, depth = os.path.join(folder, "color"), os.path.join(folder, "depth")
    if os.path.isdir(color) and os.path.isdir(depth):
        depths = _by_stem(depth)
        for stem, path in sorted(_by_stem(color).items(), key=lambda kv: natural_key(kv[0])):
            if stem in depths:
                pairs.append((path, lambda p=depths[stem]: rgbd_depth(p, 1000.0, valid)))
    files = _by_stem(folder)
    for stem, path in sorted(files.items(), key=lambda kv: natural_key(kv[0])):
        m = _TUM.match(stem)
        if m and f"{m['name']}_depth" in files:
            pairs.append((path, lambda p=files[f"{m['name']}_depth"]: rgbd_depth(p, 5000.0, valid)))
    return pairs


def _sots(folder, exclude_scenes):
    from keras_dehaze.data.pairing import find_pairs
    from keras_dehaze.data.resynthesis import depth_from_pair

    by_scene = {}
    for pair in find_pairs(folder):
        if pair.scene not in exclude_scenes:
            by_scene.setdefault(pair.scene, pair)

    def load(pair):
        hazy, clear = read_image(pair.hazy), read_image(pair.clear)
        return depth_from_pair(hazy, clear, os.path.basename(pair.hazy))

    return [(p.clear, lambda p=p: load(p)) for _, p in sorted(by_scene.items(), key=lambda kv: natural_key(kv[0]))]


def _detect(folder):
    subdirs = {d.lower() for d in _subdirs(folder)}
    names = [os.path.splitext(n)[0] for n in _image_names(folder)]
    if "hazy" in subdirs and ({"clear", "gt"} & subdirs):
        return "sots"
    if {"color", "depth"} <= subdirs or any(_TUM.match(n) for n in names):
        return "rgbd"
    if any("_disp_" in n or n.endswith("GT") for n in names):
        return "middlebury"
    if any(n.endswith("_depth") for n in names):
        return "prepared"
    return None


def clean_depth_pairs(folder, kind="auto", exclude_scenes=(), recursive=True, with_valid=False):
    """(clean image path, depth) for every clean image of `folder` that has depth.

    Args:
        folder: a dataset folder (see the module docstring for the layouts).
        kind: one of `KINDS`; "auto" detects it from the names. With "auto" and `recursive`, a
            folder with no recognised layout is searched one level down (e.g. the ``depth/``
            folder holding ``middlebury/`` and ``rgbd/``).
        exclude_scenes: SOTS scene ids to leave out (validation scenes must not be seen by
            the clean branch).
        with_valid: RGB-D and Middlebury callables return (depth, valid) with the mask of the
            measured (not hole-filled) pixels, for evaluating estimators
            (`keras_dehaze.depth.evaluate`); only these two kinds support it.

    Returns:
        A list of (clean_path, depth): depth is a zero-argument callable returning the HxW
        float32 map in [0, 1] (computed on demand: SOTS depth takes ~1 s per scene), or, for
        "prepared" folders, the path of the normalised 16-bit depth PNG.

    Raises:
        DatasetError: nothing with depth was found.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DatasetError(f"clean-depth folder {folder} does not exist")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    found = _detect(folder) if kind == "auto" else kind
    exclude = {str(s) for s in exclude_scenes}
    if with_valid and found in ("sots", "prepared"):
        raise ValueError(f"{folder}: with_valid needs measured depth (RGB-D or Middlebury), not {found!r}")
    if found == "sots":
        pairs = _sots(folder, exclude)
    elif found == "rgbd":
        pairs = _rgbd(folder, with_valid)
    elif found == "middlebury":
        pairs = _middlebury(folder, with_valid)
    elif found == "prepared":
        from keras_dehaze.data.unpaired import find_clean_depth

        pairs = [(p.clear, p.hazy) for p in find_clean_depth(folder)]
    elif recursive:
        pairs = [p for sub in _subdirs(folder)
                 for p in clean_depth_pairs(os.path.join(folder, sub), "auto", exclude, False, with_valid) or []]
    else:
        return []
    if not pairs and (recursive or kind != "auto"):
        raise DatasetError(f"{folder}: no clean images with depth found (layout {found or 'unknown'}; "
                           f"known: Middlebury, RGB-D color/+depth/, TUM *_color/*_depth, SOTS hazy/+clear/, "
                           f"prepared <stem>_depth.png).")
    return pairs


__all__ = [
    "KINDS",
    "clean_depth_pairs",
    "depth_from_disparity",
    "depth_from_sensor",
    "fill_holes",
    "middlebury_depth",
    "normalize_depth_map",
    "rgbd_depth",
]
