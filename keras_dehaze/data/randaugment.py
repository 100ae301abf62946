"""RandAugment for the Colabator's strong student view: photometric ops only, no geometry.

Each image gets ``num_ops`` (2) operations drawn uniformly WITH replacement from

    contrast       blend with the image's mean grey level, factor ~ U(0.5, 1.5)
    brightness     multiply by factor ~ U(0.5, 1.5)
    posterize      keep the top b bits of each 8-bit channel, b ~ U{4, ..., 8} (8 = identity)
    sharpness      blend with a 3x3 smoothed copy (PIL's kernel [[1,1,1],[1,5,1],[1,1,1]] / 13),
                   factor ~ U(0.5, 1.5): < 1 softens, > 1 sharpens
    gaussian_blur  Gaussian blur with sigma = radius ~ U{1, ..., 5} pixels (PIL's radius)

each with its own random magnitude (the RandAugment of FixMatch/Colabator draws the magnitude
per op; ``RandAugment(2, 10)`` in the reference code). The enhance factors are narrower than
classification RandAugment's U(0.1, 1.9) (``factor_range`` widens them): the student has to map
the view to the teacher's label of the ORIGINAL image, and a 10x darkened or fully flattened
input cannot be undone. The reference's own magnitude table is not in the indexed snapshot of
its repository, so these ranges are our choice, not a copy. Ops follow PIL's ImageEnhance/ImageOps/
ImageFilter definitions on float RGB in [0, 1]; every op's output is clipped to [0, 1]. Pixels
never move (no flips, crops, rotations, translations), so the student's output stays aligned
with the teacher's pseudo-label and its trust-weight map.

Randomness is stateless: ``rand_augment(image, seed)`` with a shape-[2] int seed is a pure
function of (image, seed); ``RandAugment`` draws per-image seeds from its own
``tf.random.Generator`` (seedable) for use inside a train step.

Images need at least 16 x 16 pixels (blur reflect-pads by 15).

Reference:
    Cubuk et al., "RandAugment", CVPR-W 2020; Sohn et al., "FixMatch", NeurIPS 2020;
    Fang et al. (Colabator), NeurIPS 2024.
"""

from keras_dehaze.backend import tf

OPS = ("contrast", "brightness", "posterize", "sharpness", "gaussian_blur")
FACTOR_RANGE = (0.5, 1.5)  # contrast, brightness, sharpness (PIL enhance factors)
POSTERIZE_BITS = (4, 8)  # inclusive
BLUR_RADIUS = (1, 5)  # inclusive, in pixels (sigma)
_BLUR_HALF = 3 * BLUR_RADIUS[1]  # kernel half-width: 3 sigma at the largest sigma
_GREY = (0.299, 0.587, 0.114)  # PIL's "L" conversion


def _grey(image):
    return tf.reduce_sum(image * tf.constant(_GREY, image.dtype), axis=-1, keepdims=True)


def _blend(degenerate, image, factor):
    return degenerate + factor * (image - degenerate)


def contrast(image, factor):
    """PIL ImageEnhance.Contrast: blend with the mean grey level of the image."""
    mean = tf.reduce_mean(_grey(image), axis=[-3, -2, -1], keepdims=True)
    return tf.clip_by_value(_blend(mean, image, factor), 0.0, 1.0)


def brightness(image, factor):
    """PIL ImageEnhance.Brightness: blend with black."""
    return tf.clip_by_value(image * factor, 0.0, 1.0)


def posterize(image, bits):
    """PIL ImageOps.posterize on the 8-bit value of each channel."""
    step = tf.cast(2 ** (8 - bits), tf.float32)
    levels = tf.floor(tf.round(image * 255.0) / step) * step
    return tf.clip_by_value(levels / 255.0, 0.0, 1.0)


def _depthwise(image, kernel2d):
    """Same-size depthwise filtering of [H, W, 3] with reflect padding."""
    kh, kw = kernel2d.shape[0], kernel2d.shape[1]
    padded = tf.pad(image[None], [[0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2], [0, 0]], mode="REFLECT")
    kernel = tf.tile(kernel2d[:, :, None, None], [1, 1, 3, 1])
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")[0]


def sharpness(image, factor):
    """PIL ImageEnhance.Sharpness: blend with PIL's SMOOTH-filtered copy."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    return tf.clip_by_value(_blend(_depthwise(image, kernel), image, factor), 0.0, 1.0)


def gaussian_blur(image, sigma):
    """Separable Gaussian blur with standard deviation ``sigma`` pixels (<= 5)."""
    x = tf.range(-_BLUR_HALF, _BLUR_HALF + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * tf.square(x / tf.cast(sigma, tf.float32)))
    k = k / tf.reduce_sum(k)
    out = _depthwise(image, k[:, None])
    return tf.clip_by_value(_depthwise(out, k[None, :]), 0.0, 1.0)


def _apply(image, op, seed, factor_range):
    """Applies op index ``op`` with a magnitude drawn from ``seed``."""
    u = tf.random.stateless_uniform([], seed)
    factor = factor_range[0] + u * (factor_range[1] - factor_range[0])
    bits = tf.random.stateless_uniform([], seed, POSTERIZE_BITS[0], POSTERIZE_BITS[1] + 1, dtype=tf.int32)
    radius = tf.random.stateless_uniform([], seed, BLUR_RADIUS[0], BLUR_RADIUS[1] + 1, dtype=tf.int32)
    branches = {
        "contrast": lambda: contrast(image, factor),
        "brightness": lambda: brightness(image, factor),
        "posterize": lambda: posterize(image, bits),
        "sharpness": lambda: sharpness(image, factor),
        "gaussian_blur": lambda: gaussian_blur(image, tf.cast(radius, tf.float32)),
    }
    return tf.switch_case(op, [branches[name] for name in OPS])


def rand_augment(image, seed, num_ops=2, factor_range=FACTOR_RANGE):
    """Strong photometric view of one [H, W, 3] float image in [0, 1]; same shape, in [0, 1].

    Args:
        image: [H, W, 3] float32 (H, W >= 16).
        seed: shape-[2] int32/int64 tensor (stateless randomness: same seed, same output).
        num_ops: operations per image, drawn with replacement from ``OPS``.
        factor_range: (low, high) of the contrast/brightness/sharpness factors.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2 * num_ops)
    for i in range(num_ops):
        op = tf.random.stateless_uniform([], seeds[2 * i], 0, len(OPS), dtype=tf.int32)
        image = _apply(image, op, seeds[2 * i + 1], factor_range)
        image.set_shape([None, None, 3])
    return image


class RandAugment:
    """Batched RandAugment with its own seedable generator (for use inside a train step).

    Example:
        >>> augment = RandAugment(num_ops=2, seed=0)
        >>> strong = augment(real_batch)            # [B, H, W, 3] -> [B, H, W, 3]
        >>> strong = augment(real_batch, seed=[1, 2])  # stateless, reproducible

    Args:
        num_ops: n of RandAugment (2).
        seed: seed of the internal ``tf.random.Generator`` (None: non-deterministic).
        factor_range: (low, high) of the contrast/brightness/sharpness factors.
    """

    def __init__(self, num_ops=2, seed=None, factor_range=FACTOR_RANGE):
        self.num_ops = int(num_ops)
        self.factor_range = tuple(float(f) for f in factor_range)
        self.seed = seed
        self._generator = None

    @property
    def generator(self):
        if self._generator is None:  # created lazily, outside any tf.function trace if possible
            self._generator = (tf.random.Generator.from_seed(self.seed) if self.seed is not None
                               else tf.random.Generator.from_non_deterministic_state())
        return self._generator

    def __call__(self, images, seed=None):
        images = tf.convert_to_tensor(images, tf.float32)
        batch = tf.shape(images)[0]
        if seed is None:
            seeds = self.generator.uniform_full_int([batch, 2], dtype=tf.int64)
        else:
            seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), batch)
        out = tf.map_fn(lambda args: rand_augment(args[0], args[1], self.num_ops, self.factor_range), (images, seeds),
                        fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32))
        return tf.ensure_shape(out, images.shape)


__all__ = ["OPS", "RandAugment", "brightness", "contrast", "gaussian_blur", "posterize", "rand_augment",
           "sharpness"]
