"""Padding and overlapping tiled inference for dehazing networks, in numpy only.

This module imports NOTHING but numpy (no TensorFlow, nothing else from ``keras_dehaze``), so the
same file serves the package's Keras inference and the TensorFlow-free edge runner
(``keras_dehaze.edge.tflite_dehazer``; on a Raspberry Pi it is one of the runner's copied files).

A "run function" maps a float32 array of shape ``[1, h, w, C]`` to ``[1, h, w, C_out]`` (a
Keras model call, a TFLite interpreter invocation, ...).

* ``dehaze_padded(image, run_fn, multiple)``: for models that accept any size. The image is
  padded at the bottom/right to a multiple of ``multiple`` (the network's total down-sampling
  factor), run once, and cropped back.
* ``dehaze_tiled(image, run_fn, tile=(h, w), overlap=32, multiple=4)``: for fixed-size models
  (a ``.tflite`` has a fixed input) and for images too large to run in one piece. Tiles of exactly
  ``tile`` pixels are laid on a grid with at least ``overlap`` pixels of overlap, their starts
  aligned to ``multiple`` (same down-sampling grid as the whole image); each tile's output is
  weighted by a separable window and accumulated directly into the output array.

Blending window (per axis; the 2-D weight of a tile is the outer product of its two 1-D windows):
inside the overlap of two neighbouring tiles, the first ``margin = overlap // 4`` pixels next to
a tile's edge get weight 0 (those pixels see the network's zero padding instead of the real
neighbourhood, so they are the least reliable), then the weight rises as a raised cosine
``sin^2`` over the middle of the overlap to 1, and the neighbour's window falls as ``cos^2`` over
the same pixels. The two windows therefore sum to exactly 1 in every overlap; the windows are
additionally divided by their per-axis sum, so the weights of all tiles covering a pixel sum to 1
for any geometry (also where three tiles overlap). Edges on the image border are not ramped.
Because the windows are separable and normalised per axis, no full-size weight map is needed:
the only full-size array is the output itself; everything else is tile-sized (memory for a
12000x9000 image: the output plus a few tiles). With ``out_dtype=np.uint8`` (or uint16) the
output is written as finished rows of pixels: the float blend lives in a band of one tile row
(tile height x W), and the full-size array is 8-bit (324 MB instead of 1.3 GB of float32 for
12000x9000), with exactly the pixels ``round(clip(float result, 0, 1) * 255)``.

Padding (``pad_to_size`` / ``pad_to_multiple``) adds rows/columns at the bottom/right. It
mirrors the image (numpy ``reflect``) when the image is larger than the padding along that
axis and replicates the edge pixels (``edge``) otherwise (tiny images, e.g. a 20-pixel-high
strip padded up to a 256 tile).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "INTEGER_SCALES",
    "from_unit_float",
    "to_unit_float",
    "pad_to_size",
    "pad_to_multiple",
    "crop_to_size",
    "tile_starts",
    "blend_windows_1d",
    "count_tiles",
    "dehaze_tiled",
    "dehaze_padded",
]

# Fraction of each overlap (on the side of a tile's edge) that gets weight 0.
MARGIN_FRACTION = 0.25


def _as_pair(value, name):
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}") from None
    return h, w


# Integer images are accepted as they come from a decoder and scaled to [0, 1] tile by tile,
# so a huge 8-bit photo never needs a full-size float32 copy of the input.
# Pixel scale of integer images (uint8 / uint16 <-> float in [0, 1]); shared by every dehazer.
INTEGER_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def _check_image(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"expected an image of shape (H, W, C) with H, W, C >= 1, "
                         f"got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.floating) or image.dtype in INTEGER_SCALES):
        raise TypeError(f"expected a float image (e.g. RGB in [0, 1]) or uint8/uint16, got "
                        f"dtype {image.dtype}")
    return image


def to_unit_float(array, copy=False):
    """float32 (part of an) image in [0, 1]: uint8/uint16 pixels scaled (a new array); a float
    image as it is (a contiguous view when already float32, unless ``copy``)."""
    array = np.asarray(array)
    scale = INTEGER_SCALES.get(array.dtype)
    if scale is None:
        return np.array(array, np.float32, order="C") if copy else np.ascontiguousarray(array, np.float32)
    out = array.astype(np.float32)
    out *= np.float32(1.0 / scale)
    return out


def from_unit_float(x, dtype):
    """float32 ``x`` clipped to [0, 1], or uint8/uint16 pixels ``round(clip(x, 0, 1) * scale)``
    (as ``write_image`` rounds). ``x`` is overwritten: no second full-size float array."""
    np.clip(x, 0.0, 1.0, out=x)
    dtype = np.dtype(dtype)
    if dtype in INTEGER_SCALES:
        x *= np.float32(INTEGER_SCALES[dtype])
        return np.round(x, out=x).astype(dtype)
    return x


def _pad_axis(array, axis, pad):
    """Pads ``pad`` entries at the end of ``axis``: reflect if it fits, else edge-replicate."""
    if pad <= 0:
        return array
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, pad)
    mode = "reflect" if pad < array.shape[axis] else "edge"
    return np.pad(array, widths, mode=mode)


def pad_to_size(image, size):
    """Pads ``image`` (H, W, ...) at the bottom/right to ``size`` = (H', W') >= (H, W).

    Reflect padding per axis where the image is larger than the padding, edge replication
    otherwise. Returns the padded array (the input itself if no padding is needed).
    """
    image = np.asarray(image)
    th, tw = _as_pair(size, "size")
    h, w = image.shape[:2]
    if th < h or tw < w:
        raise ValueError(f"cannot pad an image of size {h}x{w} to the smaller size {th}x{tw}")
    return _pad_axis(_pad_axis(image, 0, th - h), 1, tw - w)


def pad_to_multiple(image, multiple):
    """Pads ``image`` at the bottom/right so H and W are multiples of ``multiple``.

    Returns ``(padded, (H, W))``; ``crop_to_size(result, (H, W))`` undoes it.
    """
    image = np.asarray(image)
    mh, mw = _as_pair(multiple, "multiple")
    if mh < 1 or mw < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple!r}")
    h, w = image.shape[:2]
    size = (-(-h // mh) * mh, -(-w // mw) * mw)
    return pad_to_size(image, size), (h, w)


def crop_to_size(image, size):
    """Crops the top-left ``size`` = (H, W) of ``image`` (inverse of the padding above)."""
    h, w = _as_pair(size, "size")
    return image[:h, :w]


def tile_starts(length, tile, overlap, align=1):
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` along one axis.

    One tile (start 0) if ``length <= tile``. Otherwise the smallest number of tiles whose
    neighbours overlap by at least ``overlap`` pixels, spread evenly, every start a multiple of
    ``align``: the first starts at 0, the last at the first multiple of ``align`` >= ``length -
    tile`` (so it may reach up to ``align - 1`` pixels past the image; that tile is padded).

    Aligned starts keep every tile on the same down-sampling grid as the whole image: a network
    with stride-2 layers computes the same values for a pixel in two overlapping tiles (away
    from their edges) as for the whole image, so the blend mixes identical values.
    """
    length, tile, overlap, align = int(length), int(tile), int(overlap), int(align)
    if tile < 1 or length < 1 or align < 1:
        raise ValueError(f"tile, length and align must be >= 1, got tile={tile}, "
                         f"length={length}, align={align}")
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    max_step = (tile - overlap) // align  # in units of align
    if max_step < 1:
        raise ValueError(f"overlap {overlap} is too large for tile {tile} with starts aligned to "
                         f"{align}: it must be <= tile - align = {tile - align}")
    last = -(-(length - tile) // align)  # in units of align
    n = -(-last // max_step) + 1
    # Evenly spread, rounded to the nearest multiple of align (pure integer arithmetic).
    return [align * ((i * last * 2 + (n - 1)) // (2 * (n - 1))) for i in range(n)]


def _ramp(n, margin):
    """Rising window of length n: 0 for the first ``margin`` entries, then sin^2 up to 1."""
    k = np.arange(n, dtype=np.float64)
    rise = n - 2 * margin
    t = np.clip((k - margin + 0.5) / rise, 0.0, 1.0)
    return np.sin(0.5 * np.pi * t) ** 2


def blend_windows_1d(length, tile, overlap, align=1, margin_fraction=MARGIN_FRACTION):
    """Tile starts and normalised blending windows along one axis.

    Returns ``(starts, windows)``: ``windows[i]`` (float32) weights the output of the tile
    starting at ``starts[i]``; it has length ``min(tile, length - starts[i])`` (the part of the
    tile inside the image). For every position in ``[0, length)``, the windows of the tiles
    covering it sum to 1 (up to float32 rounding).
    """
    length, tile = int(length), int(tile)
    starts = tile_starts(length, tile, overlap, align)
    if len(starts) == 1:
        return starts, [np.ones(min(tile, length), dtype=np.float32)]
    raw = []
    for i, s in enumerate(starts):
        w = np.ones(tile, dtype=np.float64)
        if i > 0:  # overlap with the previous tile, on this tile's left side
            ov = starts[i - 1] + tile - s
            margin = int(ov * margin_fraction)
            w[:ov] = np.minimum(w[:ov], _ramp(ov, margin))
        if i < len(starts) - 1:  # overlap with the next tile, on this tile's right side
            ov = s + tile - starts[i + 1]
            margin = int(ov * margin_fraction)
            w[tile - ov:] = np.minimum(w[tile - ov:], _ramp(ov, margin)[::-1])
        raw.append(w)
    virtual = starts[-1] + tile  # >= length: the last tile may reach past the image
    total = np.zeros(virtual, dtype=np.float64)
    for s, w in zip(starts, raw):
        total[s:s + tile] += w
    if not np.all(total > 0):  # cannot happen with the windows above; guard against edits
        raise AssertionError("blending windows leave pixels with zero total weight")
    windows = [(w / total[s:s + tile])[:length - s].astype(np.float32)
               for s, w in zip(starts, raw)]
    return starts, windows


def count_tiles(image_size, tile, overlap=32, multiple=4):
    """Number of tiles ``dehaze_tiled`` runs for an image of ``image_size`` = (H, W)."""
    h, w = _as_pair(image_size, "image_size")
    th, tw = _as_pair(tile, "tile")
    mh, mw = _as_pair(multiple, "multiple")
    return len(tile_starts(h, th, overlap, mh)) * len(tile_starts(w, tw, overlap, mw))


def _run(run_fn, batch, expected_hw):
    result = np.asarray(run_fn(batch))
    if result.ndim != 4 or result.shape[0] != 1 or tuple(result.shape[1:3]) != tuple(expected_hw):
        raise ValueError(f"run_fn must map [1, {expected_hw[0]}, {expected_hw[1]}, C] to "
                         f"[1, {expected_hw[0]}, {expected_hw[1]}, C_out]; it returned shape "
                         f"{result.shape} for input shape {batch.shape}")
    return result[0]


def dehaze_tiled(image, run_fn, tile, overlap=32, multiple=4, progress=None, out_dtype=np.float32):
    """Runs ``run_fn`` on overlapping ``tile``-sized tiles of ``image`` and blends them.

    Args:
        image: float array (H, W, C), any size (e.g. RGB in [0, 1]); uint8 / uint16 arrays
            are scaled to [0, 1] (/ 255, / 65535) tile by tile, without a full-size float copy.
        run_fn: maps float32 [1, th, tw, C] to [1, th, tw, C_out].
        tile: (th, tw) (or an int), the size every call of ``run_fn`` receives; each must be a
            multiple of ``multiple``.
        overlap: minimum overlap between neighbouring tiles, in pixels (< tile). The actual
            overlaps are spread evenly and may be larger.
        multiple: the network's size divisor (its total down-sampling factor). ``tile`` must
            be a multiple of it, and tile starts are aligned to it, so every tile sees the
            same down-sampling grid as the whole image would (tiled == whole-image result away
            from tile edges, also for strided networks). The last tile along an axis may reach
            up to ``multiple - 1`` pixels past the image; it is padded (reflect), exactly like
            ``dehaze_padded`` pads the whole image.
        progress: optional callable ``progress(done, total)`` called after each tile.
        out_dtype: float32 (default): the blended result as is. uint8 / uint16: pixels
            ``round(clip(result, 0, 1) * 255)`` (65535), written row band by row band, so no
            full-size float array exists at all.

    Returns:
        array (H, W, C_out) of ``out_dtype``. An image that fits in one tile is padded up to the
        tile (fixed-size models need the exact size), run once and cropped. Larger images are
        tiled; memory is the output plus a few tile-sized arrays (no full-size temporaries).
    """
    image = _check_image(image)
    out_dtype = np.dtype(out_dtype)
    if out_dtype != np.float32 and out_dtype not in INTEGER_SCALES:
        raise ValueError(f"out_dtype must be float32, uint8 or uint16, got {out_dtype}")
    th, tw = _as_pair(tile, "tile")
    mh, mw = _as_pair(multiple, "multiple")
    if th < 1 or tw < 1:
        raise ValueError(f"tile must be >= 1, got {tile!r}")
    if th % mh or tw % mw:
        raise ValueError(f"tile {th}x{tw} must be a multiple of {mh}x{mw}")
    overlap = int(overlap)
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    h, w = image.shape[:2]
    if (h > th and overlap > th - mh) or (w > tw and overlap > tw - mw):
        raise ValueError(f"overlap {overlap} must be at most the tile {th}x{tw} minus the "
                         f"multiple {mh}x{mw}")
    ys, wys = blend_windows_1d(h, th, overlap, mh)
    xs, wxs = blend_windows_1d(w, tw, overlap, mw)
    if out_dtype != np.float32:
        return _tiled_to_integer(image, run_fn, (th, tw), ys, wys, xs, wxs, out_dtype, progress)
    total = len(ys) * len(xs)
    out = None
    done = 0
    for y0, wy in zip(ys, wys):
        y1 = y0 + len(wy)
        for x0, wx in zip(xs, wxs):
            x1 = x0 + len(wx)
            piece = pad_to_size(to_unit_float(image[y0:y1, x0:x1]), (th, tw))
            result = _run(run_fn, piece[None], (th, tw))[: y1 - y0, : x1 - x0]
            if out is None:
                out = np.zeros((h, w, result.shape[-1]), dtype=np.float32)
            if total == 1:
                out[...] = result
            else:
                weight = wy[:, None, None] * wx[None, :, None]
                out[y0:y1, x0:x1] += result * weight
            done += 1
            if progress is not None:
                progress(done, total)
    return out


def _tiled_to_integer(image, run_fn, tile, ys, wys, xs, wxs, out_dtype, progress):
    """``dehaze_tiled`` with integer output: tiles are blended into a float32 band covering one
    row of tiles; after each tile row, the rows no later tile touches are final and are
    converted into the integer output, the rest moves to the top of the band. Per pixel, the
    additions happen in the same order as in the float path, so the pixels are exactly
    ``round(clip(float output, 0, 1) * scale)``."""
    th, tw = tile
    h, w = image.shape[:2]
    scale = INTEGER_SCALES[out_dtype]
    total = len(ys) * len(xs)
    out = band = None
    done = 0
    for i, (y0, wy) in enumerate(zip(ys, wys)):
        y1 = y0 + len(wy)
        for x0, wx in zip(xs, wxs):
            x1 = x0 + len(wx)
            piece = pad_to_size(to_unit_float(image[y0:y1, x0:x1]), (th, tw))
            result = _run(run_fn, piece[None], (th, tw))[: y1 - y0, : x1 - x0]
            if out is None:
                out = np.empty((h, w, result.shape[-1]), dtype=out_dtype)
                band = np.zeros((th, w, result.shape[-1]), dtype=np.float32)
            if total == 1:
                band[: y1 - y0] = result
            else:
                band[: y1 - y0, x0:x1] += result * (wy[:, None, None] * wx[None, :, None])
            done += 1
            if progress is not None:
                progress(done, total)
        final = (ys[i + 1] if i + 1 < len(ys) else y1) - y0  # rows no later tile touches
        rows = band[:final]
        np.clip(rows, 0.0, 1.0, out=rows)
        rows *= np.float32(scale)
        np.round(rows, out=rows)
        out[y0:y0 + final] = rows
        keep = y1 - y0 - final
        band[:keep] = band[final:final + keep].copy()
        band[keep:] = 0.0
    return out


def dehaze_padded(image, run_fn, multiple=4):
    """Pads ``image`` to a multiple of ``multiple``, runs ``run_fn`` once, crops the result.

    For models with a dynamic spatial size. ``image`` as in ``dehaze_tiled`` (float, or
    uint8/uint16 scaled to [0, 1]). Returns float32 (H, W, C_out).
    """
    image = _check_image(image)
    padded, size = pad_to_multiple(to_unit_float(image), multiple)
    result = _run(run_fn, np.ascontiguousarray(padded)[None], padded.shape[:2])
    return np.ascontiguousarray(crop_to_size(result, size), dtype=np.float32)
