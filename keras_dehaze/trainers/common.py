"""Loss pieces shared by every trainer: per-example L1 over one or several output scales, PSNR/SSIM,
and the contrastive-regularization term built from the `trainer` config section.

Every function returns PER-EXAMPLE values ([B]); trainers reduce them with
``tf.nn.compute_average_loss`` so that gradients are correct under tf.distribute (a plain
reduce_mean on each replica would multiply the update by the number of replicas).
"""

from keras_dehaze.backend import tf

MULTISCALE_WEIGHTS = (1.0, 0.5, 0.25)  # J, J/2, J/4 (MS-DehazeNet, the Rehazy paper)


def as_outputs(outputs):
    """A network returns one image or a list [full, 1/2, 1/4, ...]; always give a list."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def per_example_l1(a, b):
    return tf.reduce_mean(tf.abs(a - b), axis=[1, 2, 3])


def multiscale_l1(outputs, target, weights=MULTISCALE_WEIGHTS):
    """Sum over scales of weight_s * L1(output_s, target resized to output_s)."""
    outputs = as_outputs(outputs)
    if len(outputs) > len(weights):
        raise ValueError(f"{len(outputs)} outputs but only {len(weights)} scale weights")
    total = 0.0
    for scale, (out, weight) in enumerate(zip(outputs, weights)):
        ref = target if scale == 0 else tf.image.resize(target, tf.shape(out)[1:3], method="area")
        total += weight * per_example_l1(out, ref)
    return total


def average(per_example):
    """Mean over the GLOBAL batch (correct under tf.distribute)."""
    return tf.nn.compute_average_loss(per_example)


def capped_psnr(pred, target, cap=100.0):
    """Per-example PSNR on [0,1] images, capped so identical pairs do not make the mean inf."""
    return tf.minimum(tf.image.psnr(pred, target, max_val=1.0), cap)


def ssim(pred, target):
    return tf.image.ssim(pred, target, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03)


def build_contrastive(trainer_cfg):
    """The contrastive-regularization term of a resolved ``trainer`` config section, or None
    when ``cr_weight`` is 0. Missing pretrained features raise here, before any training starts
    (never random features)."""
    if not trainer_cfg.cr_weight or trainer_cfg.cr_weight <= 0:
        return None
    from keras_dehaze.losses import ContrastiveRegularization

    return ContrastiveRegularization(
        feature_extractor=trainer_cfg.features,
        weights=trainer_cfg.feature_weights or None,
        num_negatives=trainer_cfg.num_negatives,
        positive_only=trainer_cfg.positive_only,
    )
