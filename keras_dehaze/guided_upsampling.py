"""Dehaze a large photo at a working resolution and carry the result to full size.

The scattering model makes a dehazed pixel an affine function of the hazy one in each colour
channel, ``J = (I - A) / t + A = a * I + b``, with ``a = 1/t`` and ``b = A (1 - 1/t)`` varying
only as slowly as the transmission ``t``. So a network run on a downscaled photo gives, per
channel, local linear coefficients (a, b) fitted between its input and output in small windows
(the guided filter's least-squares step); upsampled and applied to the full-size photo they
restore the full resolution detail of the input (guided upsampling; He et al., "Guided Image
Filtering", TPAMI 2013, and He & Sun, "Fast Guided Filter", 2015).

The network then sees the whole photo at once: the whole-image statistics of LKD-Net's layer
norms and of the attention layers' global pooling stay global, where tiles would each get
their own. Numpy and OpenCV only, so the on-device runner can use it without TensorFlow.
"""

import math

import cv2
import numpy as np

from keras_dehaze.tiling import from_unit_float, to_unit_float

# Fit windows of (2 * RADIUS + 1)^2 working-resolution pixels; EPS regularises flat windows
# (where the hazy input carries no signal the fit falls back to the local mean). Chosen on
# held-out SOTS and real pairs: docs/deployment.md, "Large photos".
RADIUS = 2
EPS = 1e-5
STRIP_ROWS = 512  # full-size rows per strip: bounds the float32 working memory
# Default working resolution (docs/deployment.md, "Large photos": on the real 1600x1200 pairs
# 0.15-0.3 MP score alike and above full resolution; 0.18 MP keeps a 1600x1200 photo under 2 s).
DEFAULT_WORK_PIXELS = 180_000
# Photos up to this many times the working resolution run as they are: downscaling them would
# save little time and loses detail (SOTS 620x460 with the default runs exactly as trained).
AS_IS_FACTOR = 1.7


def working_size(height, width, max_pixels, multiple=1):
    """(h, w) no larger than the photo with h * w <= max_pixels, aspect kept, sides rounded down
    to ``multiple``; the photo's own size when it already fits."""
    if height * width <= max_pixels:
        return int(height), int(width)
    scale = math.sqrt(max_pixels / float(height * width))
    h = max(multiple, int(height * scale) // multiple * multiple)
    w = max(multiple, int(width * scale) // multiple * multiple)
    return h, w


def _box(x, radius):
    return cv2.boxFilter(x, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def affine_coefficients(guide, target, radius=RADIUS, eps=EPS):
    """Per-channel local linear fit ``target ~ a * guide + b``, smoothed as in the guided filter.

    Args:
        guide, target: float32 arrays (H, W, C) of the same shape (hazy input and network
            output at the working resolution).
        radius: window radius in pixels. eps: regulariser of a (in squared intensity units).

    Returns:
        (a, b): float32 arrays (H, W, C).
    """
    guide = np.asarray(guide, np.float32)
    target = np.asarray(target, np.float32)
    if guide.shape != target.shape or guide.ndim != 3:
        raise ValueError(f"guide and target must be equal (H, W, C) arrays, got {guide.shape} "
                         f"and {target.shape}")
    mean_i, mean_p = _box(guide, radius), _box(target, radius)
    cov = _box(guide * target, radius) - mean_i * mean_p
    var = _box(guide * guide, radius) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return _box(a, radius), _box(b, radius)


def _resize_rows(coeff, full_h, full_w, y0, y1):
    """Bilinear resize of ``coeff`` to (full_h, full_w), rows y0:y1 only (same pixel-centre
    mapping as cv2.resize, so strips join without seams)."""
    low_h, low_w = coeff.shape[:2]
    sy, sx = low_h / full_h, low_w / full_w
    top = max(0, int(math.floor((y0 + 0.5) * sy - 0.5)) - 1)
    bottom = min(low_h, int(math.ceil((y1 - 0.5) * sy - 0.5)) + 2)
    # destination (x, y) -> source ((x + .5) sx - .5, (y + y0 + .5) sy - .5 - top)
    matrix = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, (y0 + 0.5) * sy - 0.5 - top]], np.float64)
    return cv2.warpAffine(np.ascontiguousarray(coeff[top:bottom]), matrix, (full_w, y1 - y0),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def apply_coefficients(image, a, b, dtype=np.float32, progress=None):
    """``a * image + b`` with (a, b) upsampled to the image's size, strip by strip.

    Args:
        image: (H, W, C) float32 in [0, 1], or uint8/uint16 pixels (scaled to [0, 1]).
        a, b: coefficients at the working resolution.
        dtype: float32 (clipped to [0, 1]) or uint8/uint16 (``round(clip(x, 0, 1) * 255)``):
            only one strip is ever held as float.
        progress: optional callable(done_rows, total_rows).
    """
    h, w = image.shape[:2]
    dtype = np.dtype(dtype)
    out = np.empty(image.shape, dtype)
    for y0 in range(0, h, STRIP_ROWS):
        y1 = min(h, y0 + STRIP_ROWS)
        strip = to_unit_float(image[y0:y1], copy=True)  # scaled in place below
        strip *= _resize_rows(a, h, w, y0, y1).reshape(strip.shape)
        strip += _resize_rows(b, h, w, y0, y1).reshape(strip.shape)
        out[y0:y1] = from_unit_float(strip, dtype)
        if progress is not None:
            progress(y1, h)
    return out


def dehaze_large(image, run, max_pixels, multiple=1, radius=RADIUS, eps=EPS, dtype=np.float32,
                 progress=None):
    """Dehaze ``image`` with ``run`` at no more than ``max_pixels``, then guided-upsample.

    Args:
        image: (H, W, 3) float32 in [0, 1] (or uint8/uint16).
        run: callable taking and returning a float32 (h, w, 3) image in [0, 1] (the network on
            one whole image).
        max_pixels: working-resolution budget. A photo that fits is run as it is, and the
            result is exactly the network's output.
        multiple: round the working size down to this (the network's stride).
        dtype: of the result, as in ``apply_coefficients``.

    Returns:
        (H, W, 3) ``dtype``.
    """
    h, w = image.shape[:2]
    low_h, low_w = working_size(h, w, max_pixels, multiple)
    if (low_h, low_w) == (h, w):
        return from_unit_float(np.asarray(run(to_unit_float(image, copy=True)), np.float32), dtype)
    small = to_unit_float(cv2.resize(image, (low_w, low_h), interpolation=cv2.INTER_AREA))
    dehazed = np.asarray(run(small), np.float32)
    if dehazed.shape != small.shape:
        raise ValueError(f"the model returned shape {dehazed.shape} for an input of {small.shape}")
    a, b = affine_coefficients(small, dehazed, radius, eps)
    return apply_coefficients(image, a, b, dtype, progress=progress)


class GuidedDehazer:
    """A dehazer (``keras_dehaze.inference`` / ``TFLiteDehazer`` interface) that runs its network
    on the whole photo at no more than ``max_pixels`` and guided-upsamples the result. Photos
    up to ``AS_IS_FACTOR * max_pixels`` are passed to the network as they are.

    Attributes ``name``, ``last_plan`` (``("guided", (h, w))`` at the working size, or the
    network's own plan when the photo fits) and ``last_tiles`` follow the wrapped dehazer."""

    def __init__(self, dehazer, max_pixels=DEFAULT_WORK_PIXELS, multiple=4):
        if max_pixels < 1:
            raise ValueError(f"the working resolution must be at least 1 pixel, got {max_pixels}")
        self.dehazer, self.max_pixels, self.multiple = dehazer, int(max_pixels), int(multiple)
        # One run of the network on the whole working image, never tiles (whose image-wide
        # statistics would differ from tile to tile): raise the wrapped dehazer's tile budget.
        if hasattr(dehazer, "max_pixels"):
            dehazer.max_pixels = max(dehazer.max_pixels, int(AS_IS_FACTOR * self.max_pixels))
        self.last_plan, self.last_tiles = None, 0

    @property
    def name(self):
        return self.dehazer.name

    def __repr__(self):
        return f"{self.dehazer!r}, guided from at most {self.max_pixels / 1e6:.2f} MP"

    def __call__(self, image, dtype=np.float32, progress=None):
        image = np.asarray(image)
        h, w = image.shape[:2]
        if h * w <= AS_IS_FACTOR * self.max_pixels:
            out = self.dehazer(image, dtype=dtype, progress=progress)
            self.last_plan = getattr(self.dehazer, "last_plan", None)
        else:
            def run(small):
                # A Keras network with image-wide statistics runs as one tile (its tile side
                # is raised for this run); others keep their own tiles.
                if getattr(self.dehazer, "image_wide_statistics", False) and \
                        isinstance(getattr(self.dehazer, "tile", None), int):
                    saved, self.dehazer.tile = self.dehazer.tile, max(self.dehazer.tile, *small.shape[:2])
                    try:
                        return self.dehazer(small, dtype=np.float32)
                    finally:
                        self.dehazer.tile = saved
                return self.dehazer(small, dtype=np.float32)

            def rows(done, total):
                if progress is not None:
                    progress(done, total)

            out = dehaze_large(image, run, self.max_pixels, self.multiple, dtype=dtype, progress=rows)
            self.last_plan = ("guided", working_size(h, w, self.max_pixels, self.multiple))
        self.last_tiles = getattr(self.dehazer, "last_tiles", 1)
        return out
