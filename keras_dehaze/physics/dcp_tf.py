"""Dark Channel Prior pieces as batched TF ops, so they run inside a training graph.

The NumPy/OpenCV originals are in `keras_dehaze.physics.dcp` (single images); these versions
take NHWC float32 batches in [0, 1] and agree with them on the same image (tests check it):

- `dark_channel`: min over colour channels, then a patch x patch min filter written as
  ``-max_pool(-x)`` with "SAME" padding (padded values never win, like cv2.erode's border);
- `estimate_airlight`: mean of the input pixels at the brightest `top_fraction` (0.1 %) of the
  dark channel (``mode="mean"`` of the NumPy version), per image and channel;
- `estimate_transmission`: ``t = 1 - omega * dark_channel(I / A)``;
- `guided_filter`: He's guided filter with a grey guide and clipped-window box means computed
  from cumulative sums (O(HW) for any radius);
- `depth_prior`: relative depth ``d = -ln(t)`` of a HAZY image (the Rehazy paper).

Everything is differentiable almost everywhere (min/max/top-k pass subgradients). Note what
the depth prior is: a haze-opacity measure that equals beta * depth only where the DCP holds
on a hazy image. It is not a learned depth estimator; on a haze-free (e.g. dehazed) image it
measures the residual haze, not the scene depth.
"""

from keras_dehaze.backend import tf


def _float(x):
    x = tf.convert_to_tensor(x)
    return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)


def min_filter(x, patch):
    """Square min filter over H, W of [B, H, W, C]; the window is clipped at the border."""
    patch = int(patch)
    if patch <= 1:
        return x
    return -tf.nn.max_pool2d(-x, ksize=patch, strides=1, padding="SAME")


def dark_channel(images, patch=15):
    """Dark channel [B, H, W, 1]: min over channels, then a patch x patch min filter."""
    return min_filter(tf.reduce_min(_float(images), axis=-1, keepdims=True), patch)


def estimate_airlight(images, dark=None, top_fraction=0.001, patch=15):
    """Airlight A [B, C]: mean input colour at the brightest `top_fraction` of the dark channel.

    n = max(1, round(H * W * top_fraction)) pixels per image, as the NumPy version. Ties in the
    dark channel (it is piecewise constant after the min filter) may select different pixels
    than NumPy's argpartition, so the two agree exactly only without ties.
    """
    images = _float(images)
    if dark is None:
        dark = dark_channel(images, patch)
    shape = tf.shape(images)
    b, hw, c = shape[0], shape[1] * shape[2], shape[3]
    n = tf.maximum(1, tf.cast(tf.round(tf.cast(hw, tf.float32) * top_fraction), tf.int32))
    _, idx = tf.math.top_k(tf.reshape(dark, [b, hw]), k=n, sorted=False)  # [B, n]
    flat = tf.reshape(images, [b, hw, c])
    return tf.reduce_mean(tf.gather(flat, idx, batch_dims=1), axis=1)


def estimate_transmission(images, airlight, omega=0.95, patch=15):
    """Raw transmission t = 1 - omega * dark_channel(I / A), [B, H, W, 1]. A: [B, C] or [B]."""
    a = _float(airlight)
    a = tf.reshape(a, [tf.shape(a)[0], 1, 1, -1])
    return 1.0 - omega * dark_channel(_float(images) / tf.maximum(a, 1e-6), patch)


def _box_sum(x, radius):
    """Sum over the (2r+1)^2 window clipped to the image, via cumulative sums (any radius)."""
    r = int(radius)
    x = tf.pad(x, [[0, 0], [r + 1, r], [r + 1, r], [0, 0]])
    c = tf.cumsum(tf.cumsum(x, axis=1), axis=2)
    k = 2 * r + 1
    return c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]


def box_mean(x, radius):
    """Mean over the (2r+1)^2 window clipped to the image (as `dcp._box_mean`)."""
    ones = tf.ones_like(x[..., :1])
    return _box_sum(x, radius) / _box_sum(ones, radius)


def guided_filter(guide, src, radius=60, eps=1e-3):
    """He's guided filter q = mean(a) * I + mean(b), grey guide (mean of RGB), [B, H, W, 1].

    The radius is capped at max(H, W) - 1 when the static shape is known (larger windows are
    all clipped to the same image), as the NumPy version does.
    """
    guide = _float(guide)
    if guide.shape[-1] != 1:
        guide = tf.reduce_mean(guide, axis=-1, keepdims=True)
    src = _float(src)
    if guide.shape[1] is not None and guide.shape[2] is not None:
        radius = max(1, min(int(radius), max(guide.shape[1], guide.shape[2]) - 1))
    mean_i, mean_p = box_mean(guide, radius), box_mean(src, radius)
    cov_ip = box_mean(guide * src, radius) - mean_i * mean_p
    var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)


def window_sizes(images, patch=15, radius=60):
    """Patch and guided-filter radius for the static image size (same rule as
    `dcp._window_sizes`: smaller windows for small crops); unchanged for unknown sizes."""
    from keras_dehaze.physics.dcp import _window_sizes

    h, w = images.shape[1], images.shape[2]
    if h is None or w is None:
        return int(patch), int(radius)
    return _window_sizes((h, w), patch, radius)


def depth_prior(images, patch=15, omega=0.95, refine=True, radius=60, eps=1e-3, t_min=1e-3,
                airlight=None, adapt_windows=True):
    """Relative depth d = -ln(t) of hazy images from the DCP transmission, [B, H, W, 1].

    Args:
        images: hazy RGB [B, H, W, 3] in [0, 1].
        patch, omega: DCP patch size and haze-keeping factor (He et al.: 15, 0.95).
        refine: refine t with the guided filter (guide: the image) before the log.
        radius, eps: guided filter window radius and regulariser.
        t_min: t is clipped to [t_min, 1] before the log.
        airlight: A [B, 3]; estimated from the images when None.
        adapt_windows: shrink patch/radius for small static sizes (`dcp._window_sizes`).

    Returns:
        d >= 0, equal to beta * depth where the dark channel prior holds (unnormalised).
    """
    images = _float(images)
    if adapt_windows:
        patch, radius = window_sizes(images, patch, radius)
    if airlight is None:
        airlight = estimate_airlight(images, dark_channel(images, patch))
    t = estimate_transmission(images, airlight, omega, patch)
    if refine:
        t = guided_filter(images, t, radius, eps)
    return -tf.math.log(tf.clip_by_value(t, t_min, 1.0))


__all__ = [
    "min_filter",
    "dark_channel",
    "estimate_airlight",
    "estimate_transmission",
    "box_mean",
    "guided_filter",
    "window_sizes",
    "depth_prior",
]
