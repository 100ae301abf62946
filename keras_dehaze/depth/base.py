"""The depth-estimator interface shared by the DCP prior and user-supplied depth networks.

TensorFlow is imported on first use, so numpy-only estimators (PyDNet++ through LiteRT) and the
dataset-depth loaders can be used without it.
"""

NORMALIZATIONS = ("max", "minmax", "percentile", "none")


def _percentiles(depth, qs):
    """Per-image percentiles (numpy's default linear interpolation) of [B, H, W, 1] depth, each
    [B, 1, 1, 1]; differentiable (through the sort) almost everywhere."""
    from keras_dehaze.backend import tf

    flat = tf.sort(tf.reshape(depth, [tf.shape(depth)[0], -1]), axis=1)
    last = tf.cast(tf.shape(flat)[1] - 1, tf.float32)
    out = []
    for q in qs:
        pos = q / 100.0 * last
        below = tf.cast(tf.floor(pos), tf.int32)
        above = tf.minimum(below + 1, tf.cast(last, tf.int32))
        low, high = tf.gather(flat, below, axis=1), tf.gather(flat, above, axis=1)
        out.append(tf.reshape(low + (high - low) * (pos - tf.floor(pos)), [-1, 1, 1, 1]))
    return out


def normalize_depth(depth, mode="max", eps=1e-6):
    """Per-image normalisation of [B, H, W, 1] depth.

    "max": d / max(d) (keeps d = 0 at zero: for depths with a natural origin such as -ln t);
    "minmax": (d - min) / (max - min) (for affine-invariant outputs of learned models);
    "percentile": (d - p1) / (p99 - p1) clipped to [0, 1] (affine-invariant outputs with a few
    outlier pixels, as PyDNet++ has); "none": unchanged. Differentiable almost everywhere.
    """
    from keras_dehaze.backend import tf

    if mode == "none":
        return depth
    if mode not in NORMALIZATIONS:
        raise ValueError(f"depth normalisation must be one of {NORMALIZATIONS}, got {mode!r}")
    if mode == "percentile":
        low, high = _percentiles(depth, (1.0, 99.0))
        return tf.clip_by_value((depth - low) / tf.maximum(high - low, eps), 0.0, 1.0)
    high = tf.reduce_max(depth, axis=[1, 2, 3], keepdims=True)
    if mode == "max":
        return depth / tf.maximum(high, eps)
    low = tf.reduce_min(depth, axis=[1, 2, 3], keepdims=True)
    return (depth - low) / tf.maximum(high - low, eps)


class DepthEstimator:
    """``estimator(images [B, H, W, 3] in [0, 1]) -> relative depth [B, H, W, 1]`` (larger = farther).

    Subclasses implement `predict` (raw output at the input size); `__call__` normalises it
    per image with `normalize` so that d is in [0, 1] (the convention of the haze synthesis
    ranges: beta is applied to depth normalised to [0, 1]).

    Attributes:
        name: short label for logs.
        differentiable: gradients flow from the depth to the input images; required for the
            depth-consistency loss of the Rehazy trainer.
        haze_invariant: meant to give the same depth for a hazy image and its clean version
            (learned depth networks, dataset depth). The DCP prior is NOT: it measures haze.
        normalize: "max", "minmax", "percentile" or "none".
    """

    name = "depth"
    differentiable = False
    haze_invariant = False
    normalize = "max"

    def predict(self, images):
        raise NotImplementedError

    def __call__(self, images):
        from keras_dehaze.backend import tf

        images = tf.convert_to_tensor(images, tf.float32)
        depth = self.predict(images)
        if depth.shape.rank == 3:
            depth = depth[..., None]
        return normalize_depth(tf.cast(depth, tf.float32), self.normalize)

    def describe(self):
        return self.name


__all__ = ["DepthEstimator", "NORMALIZATIONS", "normalize_depth"]
