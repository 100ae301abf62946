"""Batched TensorFlow PSNR/SSIM for use inside a Keras `test_step` / `tf.function`.

Same convention as `full_reference` (docs/results_history.md, metric conventions): NHWC RGB in [0, 1], max_val 1, whole
image; SSIM with an 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid region, mean
over channels. They run in float32, so they agree with the float64 numpy reference only to
~1e-4 dB / ~1e-5 SSIM; report final numbers with the numpy versions.
"""

from keras_dehaze.backend import tf

MAX_VAL = 1.0


def psnr_tf(pred, target):
    """Per-example PSNR in dB, shape [B], for NHWC float images in [0, 1].

    An example whose prediction equals its target has MSE 0 and gives +inf (tf.image.psnr
    computes -10*log10(0)). This is deliberate, matching `full_reference.psnr`; average with
    care (e.g. skip or cap infinite values) when aggregating over a data set.
    """
    pred = tf.convert_to_tensor(pred, dtype=tf.float32)
    target = tf.convert_to_tensor(target, dtype=tf.float32)
    return tf.image.psnr(pred, target, max_val=MAX_VAL)


def ssim_tf(pred, target):
    """Per-example SSIM, shape [B], for NHWC float images in [0, 1].

    Images must be at least 11x11 (tf.image.ssim raises otherwise).
    """
    pred = tf.convert_to_tensor(pred, dtype=tf.float32)
    target = tf.convert_to_tensor(target, dtype=tf.float32)
    return tf.image.ssim(
        pred, target, max_val=MAX_VAL, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03
    )
