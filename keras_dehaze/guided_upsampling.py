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

# Fit windows of (2 * RADIUS + 1)^2 working-resolution pixels; EPS regularises flat windows
# (where the hazy input carries no signal the fit falls back to the local mean). Chosen on
# held-out SOTS and real pairs: docs/deployment.md, "Large photos".
RADIUS = 2
EPS = 1e-5
STRIP_ROWS = 512  # full-size rows per strip: bounds the float32 working memory


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


def apply_coefficients(image, a, b, out=None, progress=None):
    """``a * image + b`` with (a, b) upsampled to the image's size, strip by strip.

    Args:
        image: (H, W, C) float32 in [0, 1], or uint8/uint16 (scaled to [0, 1]).
        a, b: coefficients at the working resolution.
        out: optional float32 (H, W, C) array to write into (may be ``image`` itself).
        progress: optional callable(done_rows, total_rows).

    Returns:
        float32 (H, W, C) clipped to [0, 1].
    """
    h, w = image.shape[:2]
    scale = 1.0 / np.iinfo(image.dtype).max if image.dtype.kind in "ui" else 1.0
    if out is None:
        out = np.empty(image.shape, np.float32)
    for y0 in range(0, h, STRIP_ROWS):
        y1 = min(h, y0 + STRIP_ROWS)
        strip = image[y0:y1].astype(np.float32) * scale
        ra = _resize_rows(a, h, w, y0, y1).reshape(strip.shape)
        rb = _resize_rows(b, h, w, y0, y1).reshape(strip.shape)
        np.clip(ra * strip + rb, 0.0, 1.0, out=out[y0:y1])
        if progress is not None:
            progress(y1, h)
    return out


def dehaze_large(image, run, max_pixels, multiple=1, radius=RADIUS, eps=EPS, progress=None):
    """Dehaze ``image`` with ``run`` at no more than ``max_pixels``, then guided-upsample.

    Args:
        image: (H, W, 3) float32 in [0, 1] (or uint8/uint16).
        run: callable taking and returning a float32 (h, w, 3) image in [0, 1] (the network on
            one whole image).
        max_pixels: working-resolution budget; a photo that fits is run as it is (exactly the
            network's output).
        multiple: round the working size down to this (a fixed stride of the network).

    Returns:
        float32 (H, W, 3) in [0, 1].
    """
    h, w = image.shape[:2]
    low_h, low_w = working_size(h, w, max_pixels, multiple)
    if (low_h, low_w) == (h, w):
        as_float = image.astype(np.float32)
        if image.dtype.kind in "ui":
            as_float /= np.iinfo(image.dtype).max
        return run(as_float)
    small = cv2.resize(image, (low_w, low_h), interpolation=cv2.INTER_AREA).astype(np.float32)
    if image.dtype.kind in "ui":
        small /= np.iinfo(image.dtype).max
    dehazed = np.asarray(run(small), np.float32)
    if dehazed.shape != small.shape:
        raise ValueError(f"the model returned shape {dehazed.shape} for an input of {small.shape}")
    a, b = affine_coefficients(small, dehazed, radius, eps)
    return apply_coefficients(image, a, b, progress=progress)
