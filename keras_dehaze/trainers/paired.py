"""Paired training: L1 (+ beta x contrastive regularization) for any dehazing network."""

from keras_dehaze.backend import keras, tf
from keras_dehaze.trainers.base import CR_SETTINGS, Trainer, register_trainer
from keras_dehaze.trainers.common import as_outputs, average, build_contrastive, capped_psnr, multiscale_l1, ssim


@register_trainer("contrastive")
class PairedTrainer(Trainer):
    """Wraps any dehazer; ``train_step`` minimises ``L1(out, J) + cr_weight * CR(out, J, I)``.

    The network may return one image or a list of scales (full resolution first); the L1 is
    then multi-scale with weights 1 / 0.5 / 0.25 and CR acts on the full-resolution output.
    ``test_step`` reports PSNR and SSIM of the full-resolution output clipped to [0, 1].

    Args:
        dehazer: a ``keras.Model`` mapping hazy RGB in [0, 1] to restored RGB.
        contrastive: a ``ContrastiveRegularization`` or None (plain L1).
        cr_weight: beta of the paper (0.1).
        cr_start_step: optimizer step from which CR is on (L1 only before). A network that
            starts as the identity (global residual) has D(G(I), G(out)) ~ 0 at first, so the
            CR ratio and its gradient explode and push the output away from the input in
            whatever direction the features respond to most (stripe artifacts); an L1 warm-up
            first moves the output away from the hazy input.

    Example:
        >>> trainer = PairedTrainer(AECRNet(), ContrastiveRegularization("hed_vgg16"))
        >>> trainer.compile(optimizer=keras.optimizers.Adam(2e-4))
        >>> trainer.fit(paired_dataset(...), validation_data=validation_dataset(...))

    Reference:
        Wu et al., "Contrastive Learning for Compact Single Image Dehazing", CVPR 2021, Eq. 4.
    """

    trainer_settings = CR_SETTINGS + ("cr_start_step",)
    trainer_defaults = {"cr_weight": 0.1, "features": "vgg19"}
    train_metrics = ("loss", "l1", "cr")
    test_metrics = ("l1", "psnr", "ssim")

    def __init__(self, dehazer, contrastive=None, cr_weight=0.1, cr_start_step=0, **kwargs):
        super().__init__(dehazer, **kwargs)
        # Kept out of Keras tracking: the frozen VGG must not land in every checkpoint.
        object.__setattr__(self, "_contrastive", contrastive)
        self.cr_weight = float(cr_weight)
        self.cr_start_step = int(cr_start_step)
        mean = keras.metrics.Mean
        self.loss_tracker, self.l1_tracker, self.cr_tracker = mean("loss"), mean("l1"), mean("cr")
        self.psnr_tracker, self.ssim_tracker = mean("psnr"), mean("ssim")

    @property
    def contrastive(self):
        return self._contrastive

    @property
    def metrics(self):
        return [self.loss_tracker, self.l1_tracker, self.cr_tracker, self.psnr_tracker, self.ssim_tracker]

    def describe(self):
        cr = self.contrastive
        if cr is None:
            return "loss L1 only (no CR)"
        warmup = f" from step {self.cr_start_step}" if self.cr_start_step else ""
        return f"loss L1 + {self.cr_weight} x CR ({cr.describe()}){warmup}"

    @classmethod
    def from_experiment_config(cls, config, dehazer):
        """L1 + ``trainer.cr_weight`` x CR on the ``trainer.features``."""
        t = cls.resolve_config(config).trainer
        return cls(dehazer, build_contrastive(t), t.cr_weight, cr_start_step=t.cr_start_step)

    def per_example_losses(self, hazy, clear, training=True):
        outputs = as_outputs(self.dehazer(hazy, training=training))
        l1 = multiscale_l1(outputs, clear)
        cr = tf.zeros_like(l1)
        if self.contrastive is not None and self.cr_weight:
            cr = self.contrastive(outputs[0], clear, hazy)
        return l1, cr, outputs[0]

    def train_step(self, data):
        hazy, clear = data
        cr_weight = tf.where(self.optimizer.iterations >= self.cr_start_step, self.cr_weight, 0.0)
        with tf.GradientTape() as tape:
            l1, cr, _ = self.per_example_losses(hazy, clear, training=True)
            loss = average(l1 + cr_weight * cr)
        grads = tape.gradient(loss, self.dehazer.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.dehazer.trainable_variables))
        self.loss_tracker.update_state(l1 + cr_weight * cr)
        self.l1_tracker.update_state(l1)
        self.cr_tracker.update_state(cr)
        return self.metric_results(self.train_metrics)

    def test_step(self, data):
        hazy, clear = data
        restored = tf.clip_by_value(as_outputs(self.dehazer(hazy, training=False))[0], 0.0, 1.0)
        self.l1_tracker.update_state(tf.reduce_mean(tf.abs(restored - clear), axis=[1, 2, 3]))
        self.psnr_tracker.update_state(capped_psnr(restored, clear))
        self.ssim_tracker.update_state(ssim(restored, clear))
        return self.metric_results(self.test_metrics)
