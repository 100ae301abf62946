"""CORUN's pretraining loss: L1 + re-hazing consistency + contrastive-perceptual term.

    L = w_pix * L1(J, gt) + w_asm * L1(J * T + 1 - T, P) + w_cr * CR(J, gt, P)

with J the dehazed output, T the transmission T^_K of the last stage (``CORUN(...,
return_transmission=True)``), P the hazy input and CR the contrastive regularization of
AE-CR-Net on the VGG taps relu1_1..relu5_1 (weights 1/32 .. 1). Reference weights 1, 0.01,
0.2 (Fang et al., NeurIPS 2024; ref code options ``pixel_opt``, ``asm_loss``, ``perceptual_weight``).

Example:
    >>> loss = CORUNLoss(feature_extractor="hed_vgg16")
    >>> dehazed, t = model(hazy, training=True)  # model built with return_transmission=True
    >>> per_example = loss(dehazed, t, clear, hazy)  # [B]
    >>> total = tf.nn.compute_average_loss(per_example, global_batch_size=gbs)

Reference:
    Fang et al., "Real-world Image Dehazing with Coherence-based Label Generator and
    Cooperative Unfolding Network", NeurIPS 2024; github.com/cnyvfang/CORUN-Colabator
    (``CORUN_Pretrain_with_Transmission.optimize_parameters``, ``ContrastPerceptualLoss``).
"""

from keras_dehaze.backend import register, tf
from keras_dehaze.losses.contrastive import ContrastiveRegularization


def rehaze(dehazed, transmission):
    """The simplified ASM with A = 1: ``P = J * T + 1 - T`` (T broadcast over channels)."""
    return dehazed * transmission + 1.0 - transmission


@register
class CORUNLoss:
    """Per-example CORUN pretraining loss ``loss(dehazed, transmission, clear, hazy) -> [B]``.

    A plain callable like ``ContrastiveRegularization`` (four tensors do not fit
    ``Loss(y_true, y_pred)``; the trainer reduces the per-example values). ``terms(...)``
    returns the unweighted terms for logging.

    Args:
        pixel_weight: weight of L1(J, gt) (reference 1).
        asm_weight: weight of the re-hazing term L1(J T + 1 - T, P) (reference 0.01).
        contrastive_weight: weight of the contrastive-perceptual term (reference 0.2). 0 skips
            it and builds no feature extractor.
        feature_extractor: "vgg19" (reference: VGG19) or "hed_vgg16" (offline substitute);
            ignored when ``contrastive`` is given.
        contrastive: an existing ``ContrastiveRegularization`` to use (shares its extractor).
        lazy: defer building the extractor to the first call.

    Example:
        >>> loss = CORUNLoss(feature_extractor="hed_vgg16")
        >>> loss(j, t, gt, hazy).shape  # [B]

    Reference:
        github.com/cnyvfang/CORUN-Colabator, ``CORUN_Pretrain_with_Transmission`` (pixel L1,
        ``l_asm = 0.01 * L1(J T + 1 - T, P)``, ``ContrastPerceptualLoss`` weight 0.2).
    """

    def __init__(
        self,
        pixel_weight=1.0,
        asm_weight=0.01,
        contrastive_weight=0.2,
        feature_extractor="vgg19",
        contrastive=None,
        lazy=False,
    ):
        self.pixel_weight = float(pixel_weight)
        self.asm_weight = float(asm_weight)
        self.contrastive_weight = float(contrastive_weight)
        self.feature_extractor = getattr(contrastive, "feature_extractor", feature_extractor)
        self.lazy = bool(lazy)
        if contrastive is None and self.contrastive_weight:
            contrastive = ContrastiveRegularization(feature_extractor=feature_extractor, lazy=self.lazy)
        self.contrastive = contrastive

    def terms(self, dehazed, transmission, clear, hazy):
        """Unweighted per-example terms {"pixel", "asm", "contrastive"}, each [B] float32."""
        dehazed = tf.cast(dehazed, tf.float32)
        transmission = tf.cast(transmission, tf.float32)
        clear = tf.cast(clear, tf.float32)
        hazy = tf.cast(hazy, tf.float32)
        out = {
            "pixel": tf.reduce_mean(tf.abs(dehazed - clear), axis=[1, 2, 3]),
            "asm": tf.reduce_mean(tf.abs(rehaze(dehazed, transmission) - hazy), axis=[1, 2, 3]),
        }
        if self.contrastive_weight:
            out["contrastive"] = self.contrastive(dehazed, clear, hazy)
        return out

    def __call__(self, dehazed, transmission, clear, hazy):
        t = self.terms(dehazed, transmission, clear, hazy)
        total = self.pixel_weight * t["pixel"] + self.asm_weight * t["asm"]
        if self.contrastive_weight:
            total += self.contrastive_weight * t["contrastive"]
        return total

    def get_config(self):
        return {
            "pixel_weight": self.pixel_weight,
            "asm_weight": self.asm_weight,
            "contrastive_weight": self.contrastive_weight,
            "feature_extractor": self.feature_extractor,
            "lazy": self.lazy,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["CORUNLoss", "rehaze"]
