"""Full-reference image-quality metrics (PSNR, SSIM, CIEDE2000) in plain numpy.

These are the reference implementations used for every reported number (docs/results_history.md, metric conventions).
Everything is computed in float64. Inputs are HxWxC (or HxW) arrays:

* float arrays are taken as they are (normally RGB in [0, 1], `data_range=1`);
* uint8 / uint16 arrays are divided by 255 / 65535, so they end up in [0, 1] too.

Values are NOT clipped here: clip network outputs to [0, 1] before measuring, as the
published dehazing numbers do.
"""

import numpy as np

CONVENTION = (
    "PSNR/SSIM on RGB in [0,1] (data range 1), whole image, no border crop; "
    "SSIM Gaussian window 11, sigma 1.5, K1=0.01, K2=0.03, valid region only, "
    "computed per channel and averaged over channels; "
    "CIEDE2000 (Sharma et al. 2005, kL=kC=kH=1) mean over pixels after sRGB->Lab (D65)"
)

# Integer dtypes we know how to map to [0, 1]; anything else (int32, ...) is ambiguous.
_INTEGER_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}

# SSIM constants (Wang et al. 2004); skimage with gaussian_weights=True and tf.image.ssim agree.
SSIM_WIN_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# sRGB (IEC 61966-2-1) linear RGB -> XYZ, D65 (7-digit values, Lindbloom). Rows sum to the D65
# white point below (to 1e-7), so RGB white maps to L=100, a=b=0. skimage uses older 6-digit
# values; the mean CIEDE2000 differs by ~1e-5 relative.
_XYZ_FROM_RGB = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
# Exact CIE constants (rather than the rounded 0.008856 / 7.787) keep f(t) continuous.
_LAB_EPS = 216.0 / 24389.0
_LAB_KAPPA = 24389.0 / 27.0


# ----------------------------------------------------------------------------- input handling


def _as_float(img, name):
    """Returns (`img` as float64, the integer peak it was divided by, or 0.0 for float input)."""
    arr = np.asarray(img)
    if arr.dtype in _INTEGER_MAX:
        peak = _INTEGER_MAX[arr.dtype]
        return arr.astype(np.float64) / peak, peak
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float64), 0.0
    raise TypeError(
        f"{name} has dtype {arr.dtype}; expected a float array in [0, 1], uint8 or uint16."
    )


def _prepare(pred, target, data_range, crop_border, y_channel):
    """Shared validation/conversion: returns float64 (pred, target, data_range)."""
    p, p_peak = _as_float(pred, "pred")
    t, t_peak = _as_float(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: pred {p.shape} vs target {t.shape}.")
    if p.ndim not in (2, 3):
        raise ValueError(f"Expected an HxW or HxWxC image, got shape {p.shape}.")
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}.")
    if p_peak or t_peak:
        # Integer images were rescaled to [0, 1]; any data_range other than 1 (or the dtype's
        # own maximum, which means the same thing) would silently mix scales.
        if float(data_range) not in (1.0, p_peak, t_peak):
            raise ValueError(
                f"Integer images are rescaled to [0, 1]; data_range must be 1.0 (or the dtype "
                f"maximum), got {data_range}."
            )
        data_range = 1.0
    p, t = _crop(p, crop_border), _crop(t, crop_border)
    if y_channel:
        p, t = rgb_to_y(p, data_range), rgb_to_y(t, data_range)
    return p, t, float(data_range)


def _crop(img, crop_border):
    """Removes `crop_border` pixels from each side (0 means the whole image)."""
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}.")
    if crop_border == 0:
        return img
    h, w = img.shape[:2]
    if 2 * crop_border >= min(h, w):
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {h}x{w} image.")
    return img[crop_border:-crop_border, crop_border:-crop_border, ...]


def rgb_to_y(img, data_range=1.0):
    """ITU-R BT.601 luma Y of an RGB image (HxWx3), as in BasicSR's `rgb2ycbcr(y_only=True)`.

    For RGB in [0, 1]: Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255, so Y lies in
    [16/255, 235/255]; the offset scales with `data_range` for other ranges. Returns HxW.
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"y_channel needs an HxWx3 RGB image, got shape {img.shape}.")
    weights = np.array([65.481, 128.553, 24.966]) / 255.0
    return img @ weights + 16.0 / 255.0 * data_range


# ----------------------------------------------------------------------------- PSNR


def psnr(pred, target, data_range=1.0, crop_border=0, y_channel=False):
    """Peak signal-to-noise ratio in dB over all pixels and channels.

    Args:
        pred, target: HxWx3 (or HxW) images; float in [0, data_range], or uint8/uint16.
        data_range: peak value of the float images (1.0 for [0, 1]).
        crop_border: pixels removed from each side before measuring (default 0: the AECR-Net and DehazeFormer convention).
        y_channel: measure BT.601 Y instead of RGB.

    Returns:
        PSNR in dB; `float('inf')` for identical images (MSE of 0).
    """
    p, t, data_range = _prepare(pred, target, data_range, crop_border, y_channel)
    mse = np.mean((p - t) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


# ----------------------------------------------------------------------------- SSIM


def _gaussian_kernel(size=SSIM_WIN_SIZE, sigma=SSIM_SIGMA):
    """Normalized 1-D Gaussian taps (identical to scipy's truncate=3.5 kernel and TF's)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _filter_valid(img, kernel):
    """Separable 2-D filtering of an HxW image keeping only the fully covered ('valid') region.

    Equivalent to skimage's full-size filtering followed by cropping (win_size-1)/2 pixels,
    which is what it does when averaging the SSIM map.
    """
    k = len(kernel)
    h, w = img.shape
    rows = sum(kernel[i] * img[i : h - k + 1 + i, :] for i in range(k))
    return sum(kernel[i] * rows[:, i : w - k + 1 + i] for i in range(k))


def _ssim_channel(x, y, data_range, kernel):
    """Mean SSIM of two HxW float64 images (population covariance, valid region)."""
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x = _filter_valid(x, kernel)
    mu_y = _filter_valid(y, kernel)
    var_x = _filter_valid(x * x, kernel) - mu_x * mu_x
    var_y = _filter_valid(y * y, kernel) - mu_y * mu_y
    cov = _filter_valid(x * y, kernel) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return float(np.mean(num / den))


def ssim(pred, target, data_range=1.0, crop_border=0, y_channel=False):
    """Structural similarity (Wang et al. 2004) with an 11x11 Gaussian window, sigma 1.5.

    K1=0.01, K2=0.03, population (not sample) covariance, mean over the valid region, computed
    per channel and averaged over channels. Matches skimage's `structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1)` and
    `tf.image.ssim` defaults. Arguments as in `psnr`.

    Raises:
        ValueError: if the (cropped) image is smaller than 11x11.
    """
    p, t, data_range = _prepare(pred, target, data_range, crop_border, y_channel)
    h, w = p.shape[:2]
    if h < SSIM_WIN_SIZE or w < SSIM_WIN_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} pixels (the Gaussian "
            f"window size) after cropping; got {h}x{w}."
        )
    if p.ndim == 2:
        p, t = p[..., None], t[..., None]
    kernel = _gaussian_kernel()
    channels = range(p.shape[-1])
    per_channel = [_ssim_channel(p[..., c], t[..., c], data_range, kernel) for c in channels]
    return float(np.mean(per_channel))


# ----------------------------------------------------------------------------- CIEDE2000


def rgb_to_lab(img):
    """sRGB (float in [0, 1], ...x3) -> CIE L*a*b* with the D65 reference white."""
    rgb = np.asarray(img, dtype=np.float64)
    if rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_lab needs 3 channels in the last axis, got shape {rgb.shape}.")
    # Undo the sRGB transfer curve (linear toe below 0.04045).
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ _XYZ_FROM_RGB.T / _D65_WHITE
    # cbrt (not **(1/3)) so slightly negative out-of-gamut values do not become NaN.
    f = np.where(xyz > _LAB_EPS, np.cbrt(xyz), (_LAB_KAPPA * xyz + 16.0) / 116.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def ciede2000_lab(lab1, lab2):
    """CIEDE2000 colour difference of Lab arrays (...x3), kL=kC=kH=1, element-wise.

    Follows Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula:
    implementation notes, supplementary test data, and mathematical observations",
    including their conventions for hue when a chroma is zero.
    """
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    pow25_7 = 25.0**7

    # Rescale a* so neutral colours get a better-behaved hue (the G factor).
    c_bar = 0.5 * (np.hypot(a1, b1) + np.hypot(a2, b2))
    g = 0.5 * (1.0 - np.sqrt(c_bar**7 / (c_bar**7 + pow25_7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0  # atan2(0, 0) = 0, as the paper requires
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0
    chroma_zero = (c1p * c2p) == 0

    # Differences; the hue difference takes the short way round the circle.
    d_l = L2 - L1
    d_c = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(chroma_zero, 0.0, dh)
    d_h = 2.0 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2.0)

    # Means; the mean hue also goes the short way, and is the plain sum if a chroma is zero.
    l_bar = 0.5 * (L1 + L2)
    c_bar_p = 0.5 * (c1p + c2p)
    h_sum = h1p + h2p
    h_bar = np.where(
        np.abs(h1p - h2p) <= 180.0,
        0.5 * h_sum,
        np.where(h_sum < 360.0, 0.5 * (h_sum + 360.0), 0.5 * (h_sum - 360.0)),
    )
    h_bar = np.where(chroma_zero, h_sum, h_bar)

    t = (
        1.0
        - 0.17 * np.cos(np.radians(h_bar - 30.0))
        + 0.24 * np.cos(np.radians(2.0 * h_bar))
        + 0.32 * np.cos(np.radians(3.0 * h_bar + 6.0))
        - 0.20 * np.cos(np.radians(4.0 * h_bar - 63.0))
    )
    d_theta = 30.0 * np.exp(-(((h_bar - 275.0) / 25.0) ** 2))
    r_c = 2.0 * np.sqrt(c_bar_p**7 / (c_bar_p**7 + pow25_7))
    s_l = 1.0 + 0.015 * (l_bar - 50.0) ** 2 / np.sqrt(20.0 + (l_bar - 50.0) ** 2)
    s_c = 1.0 + 0.045 * c_bar_p
    s_h = 1.0 + 0.015 * c_bar_p * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c

    term_l, term_c, term_h = d_l / s_l, d_c / s_c, d_h / s_h
    return np.sqrt(term_l**2 + term_c**2 + term_h**2 + r_t * term_c * term_h)


def ciede2000(pred, target, crop_border=0):
    """Mean CIEDE2000 difference over pixels of two sRGB images (HxWx3, [0, 1] or uint8/16).

    Lower is better; 0 for identical images.
    """
    p, t, _ = _prepare(pred, target, 1.0, crop_border, y_channel=False)
    if p.ndim != 3 or p.shape[-1] != 3:
        raise ValueError(f"ciede2000 needs HxWx3 RGB images, got shape {p.shape}.")
    return float(np.mean(ciede2000_lab(rgb_to_lab(p), rgb_to_lab(t))))
