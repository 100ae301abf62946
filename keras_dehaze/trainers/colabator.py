"""Colabator: mean-teacher fine-tuning of any pretrained dehazer on real hazy images (no GT).

Per optimizer step (``ColabatorTrainer.train_step``, compiled):

    L = supervised_weight * L1(student(P_syn), J_syn)                         (synthetic/paired)
      + pseudo_weight     * mean(w * |student(A_s(P_real)) - label|)          (trust-weighted L1)
      + cr_weight         * CR(student(A_s(P_real)), label, A_s(P_real))      (contrastive-perceptual)

then the teacher follows the student: ``teacher = ema_rate * teacher + (1 - ema_rate) * student``
(after the optimizer update; the teacher is a separate, non-trainable clone that never gets a
gradient). ``A_s`` is RandAugment (``keras_dehaze.data.randaugment``: 2 photometric ops, no
geometry); ``label`` and ``w`` come from the optimal label pool. Every term is per example and
reduced with ``tf.nn.compute_average_loss`` (correct under tf.distribute).

Pseudo-labels OUTSIDE the compiled step (``keras_dehaze.callbacks.PseudoLabelRefresh``): every
``refresh_every`` optimizer steps (and once before training) the teacher dehazes the real images
(resized to the training size), each output is scored on an N x N patch grid - haze density D
(dark channel, lower = clearer) and quality Q (100 - BRISQUE, higher = better), numpy/libsvm -
into a trust-weight map (``keras_dehaze.quality.trust``), and offered to the
``OptimalLabelPool``, which keeps it only if it beats the stored label in both image-level
scores. The training dataset (``keras_dehaze.data.real_hazy.real_label_dataset``) reads the
current label and weight map of each real image from the pool through ``tf.numpy_function`` in
the tf.data pipeline.
``prepare_experiment`` sets both up for ``keras_dehaze.experiment``.

Why not score inside ``train_step`` (``tf.numpy_function``)? BRISQUE on 64 patches costs ~1 s
per 256 px image on a CPU core, would stall every step, cannot run on TPU/remote workers, and
disk writes from inside a traced function are side effects tf.function may reorder or repeat
on retracing. In the callback they run eagerly, between steps, on the chief only. The cost of
the choice: a label is up to ``refresh_every`` steps (plus the tf.data prefetch) older than the
teacher, where the paper queries the teacher for every batch; with EMA 0.999 the teacher moves
slowly, so the difference is small.

Reference:
    Fang et al., "Real-world Image Dehazing with Coherence-based Label Generator and
    Cooperative Unfolding Network", NeurIPS 2024 (Colabator; poster Algorithm 1);
    github.com/cnyvfang/CORUN-Colabator (``Colabator.optimize_parameters``, ``Memory_bank``).
"""

import os

from keras_dehaze.backend import keras, tf
from keras_dehaze.config import ConfigError
from keras_dehaze.data.randaugment import RandAugment
from keras_dehaze.distribute import is_chief
# PretrainedWeightsError and load_pretrained_weights lived here: still importable from here.
from keras_dehaze.pretrained_weights import PretrainedWeightsError, clone_dehazer, load_pretrained_weights
from keras_dehaze.trainers.base import CR_SETTINGS, Trainer, register_trainer
from keras_dehaze.trainers.common import as_outputs, average, build_contrastive, capped_psnr, multiscale_l1, ssim
from keras_dehaze.trainers.label_pool import OptimalLabelPool


@register_trainer("colabator")
class ColabatorTrainer(Trainer):
    """Mean-teacher fine-tuning with trust-weighted pool labels; see the module docstring.

    Args:
        dehazer: the student, a pretrained ``keras.Model`` (one output or [J, J/2, ...]; CORUN
            with ``return_transmission`` works too: the first output is the image).
        contrastive: a ``ContrastiveRegularization`` (positive = pseudo-label, negative = the
            strong view) or None.
        ema_rate: eta of the teacher update (0.999).
        supervised_weight, pseudo_weight, cr_weight: weights of the three loss terms.
        augment: a ``RandAugment`` used when a batch carries no precomputed "strong" view.
        teacher: an existing teacher (default: a clone of ``dehazer``, same weights).

    Data: ``train_step`` takes ``((hazy, clear), real)`` or ``real`` alone, where ``real`` is a
    dict with "real" [B, H, W, 3], "label" [B, H, W, 3], "weights" [B, H, W, 1] and optionally
    "strong" (the augmented view; computed here with ``augment`` when absent), as produced by
    ``real_label_dataset``. ``test_step`` takes (hazy, clear) pairs and reports the student's
    PSNR/SSIM and the teacher's (``teacher_psnr``, ``teacher_ssim``).

    Example:
        >>> trainer = ColabatorTrainer(pretrained, ContrastiveRegularization("hed_vgg16"))
        >>> trainer.compile(optimizer=keras.optimizers.Adam(5e-5))
        >>> pool = OptimalLabelPool("runs/x/label_pool")
        >>> real = RealHazySet(["data/rtts"])
        >>> data = tf.data.Dataset.zip((paired_ds, real_label_dataset(real, pool, 4, 256)))
        >>> trainer.fit(data, steps_per_epoch=500, epochs=10,
        ...             callbacks=[PseudoLabelRefresh(trainer.teacher, pool, real, 256), LabelPoolLogger(pool)])

    Reference:
        Fang et al., NeurIPS 2024 (Colabator).
    """

    config_section = "colabator"
    folder_settings = ("colabator.real",)
    trainer_settings = CR_SETTINGS
    trainer_defaults = {"cr_weight": 0.1, "features": "vgg19"}
    train_metrics = ("loss", "sup_l1", "pseudo_l1", "cr")
    test_metrics = ("psnr", "ssim", "teacher_psnr", "teacher_ssim")

    def __init__(self, dehazer, contrastive=None, ema_rate=0.999, supervised_weight=1.0, pseudo_weight=1.0,
                 cr_weight=0.1, augment=None, teacher=None, **kwargs):
        if not 0.0 <= float(ema_rate) <= 1.0:
            raise ValueError(f"ema_rate must be in [0, 1], got {ema_rate}")
        super().__init__(dehazer, **kwargs)
        self.teacher = teacher if teacher is not None else clone_dehazer(dehazer, name=f"{dehazer.name}_teacher")
        self.teacher.trainable = False
        # Untracked: a tracked list of variables would add the teacher's to trainable_variables.
        object.__setattr__(self, "_pairs", self._match_weights(self.teacher, self.dehazer))
        object.__setattr__(self, "_contrastive", contrastive)  # frozen VGG: not in checkpoints
        object.__setattr__(self, "_augment", augment or RandAugment(2))
        self._augment.generator  # noqa: B018 - create its variable now, not inside a trace
        self.ema_rate = float(ema_rate)
        self.supervised_weight = float(supervised_weight)
        self.pseudo_weight = float(pseudo_weight)
        self.cr_weight = float(cr_weight)
        mean = keras.metrics.Mean
        self.loss_tracker, self.sup_tracker = mean("loss"), mean("sup_l1")
        self.pseudo_tracker, self.cr_tracker = mean("pseudo_l1"), mean("cr")
        self.psnr_tracker, self.ssim_tracker = mean("psnr"), mean("ssim")
        self.teacher_psnr_tracker, self.teacher_ssim_tracker = mean("teacher_psnr"), mean("teacher_ssim")

    @staticmethod
    def _match_weights(teacher, student):
        t, s = teacher.weights, student.weights
        if len(t) != len(s) or any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(t, s)):
            raise ValueError("the teacher's weights do not match the student's one to one")
        return list(zip(t, s))

    @property
    def contrastive(self):
        return self._contrastive

    @property
    def augment(self):
        return self._augment

    @property
    def metrics(self):
        return [self.loss_tracker, self.sup_tracker, self.pseudo_tracker, self.cr_tracker, self.psnr_tracker,
                self.ssim_tracker, self.teacher_psnr_tracker, self.teacher_ssim_tracker]

    def describe(self):
        cr = f" + {self.cr_weight} x CR(student, label, strong view) [{self.contrastive.describe()}]" \
            if self.contrastive is not None and self.cr_weight else " (no CR term)"
        return (f"Colabator: {self.supervised_weight} x L1(supervised) + {self.pseudo_weight} x trust-weighted "
                f"L1(student(strong view), pool label){cr}; teacher = EMA {self.ema_rate} of the student")

    # ------------------------------------------------------------------ losses
    def per_example_losses(self, data, training=True):
        """(supervised L1 [B_s] or None, pseudo L1 [B_r], CR [B_r])."""
        if isinstance(data, dict):
            supervised, real = None, data
        else:
            supervised, real = data
        sup = None
        if supervised is not None:
            hazy, clear = supervised
            sup = multiscale_l1(as_outputs(self.dehazer(hazy, training=training)), clear)
        strong = real.get("strong")
        if strong is None:
            strong = self.augment(real["real"])
        label = tf.stop_gradient(real["label"])
        weights = real["weights"]
        if weights.shape.rank == 3:
            weights = weights[..., None]
        student = as_outputs(self.dehazer(strong, training=training))[0]
        pseudo = tf.reduce_mean(tf.stop_gradient(weights) * tf.abs(student - label), axis=[1, 2, 3])
        cr = tf.zeros_like(pseudo)
        if self.contrastive is not None and self.cr_weight:
            cr = self.contrastive(student, label, strong)
        return sup, pseudo, cr

    def train_step(self, data):
        with tf.GradientTape() as tape:
            sup, pseudo, cr = self.per_example_losses(data, training=True)
            loss = self.pseudo_weight * average(pseudo) + self.cr_weight * average(cr)
            if sup is not None:
                loss += self.supervised_weight * average(sup)
        variables = self.dehazer.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.update_teacher()
        sup_mean = tf.reduce_mean(sup) if sup is not None else tf.constant(0.0)
        self.sup_tracker.update_state(sup_mean)
        self.pseudo_tracker.update_state(pseudo)
        self.cr_tracker.update_state(cr)
        self.loss_tracker.update_state(self.supervised_weight * sup_mean + self.pseudo_weight * tf.reduce_mean(pseudo)
                                       + self.cr_weight * tf.reduce_mean(cr))
        return self.metric_results(self.train_metrics)

    # ------------------------------------------------------------------ teacher
    def update_teacher(self):
        """teacher <- ema_rate * teacher + (1 - ema_rate) * student, for every weight."""
        if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
            tf.distribute.get_replica_context().merge_call(self._ema_cross_replica)
        else:
            for t, s in self._pairs:
                t.assign(self._ema(t, s))

    def _ema(self, t, s):
        if not t.dtype.is_floating:
            return tf.identity(s)  # integer state (if any) is copied
        rate = tf.cast(self.ema_rate, t.dtype)
        return rate * t + (1.0 - rate) * tf.cast(s, t.dtype)

    def _ema_cross_replica(self, strategy):
        for t, s in self._pairs:
            strategy.extended.update(t, lambda v, sv: v.assign(self._ema(v, sv)), args=(s,), group=False)

    # ------------------------------------------------------------------ evaluation
    def test_step(self, data):
        hazy, clear = data
        for model, psnr_t, ssim_t in ((self.dehazer, self.psnr_tracker, self.ssim_tracker),
                                      (self.teacher, self.teacher_psnr_tracker, self.teacher_ssim_tracker)):
            restored = tf.clip_by_value(as_outputs(model(hazy, training=False))[0], 0.0, 1.0)
            psnr_t.update_state(capped_psnr(restored, clear))
            ssim_t.update_state(ssim(restored, clear))
        return self.metric_results(self.test_metrics)

    # ------------------------------------------------------------------ experiment hooks
    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        if config.optim.ema:
            raise ConfigError("optim.ema is not for the colabator trainer: its teacher already is the moving "
                              "average of the student (colabator.ema_rate); set optim.ema: 0")

    @classmethod
    def from_experiment_config(cls, config, dehazer):
        """Builds the trainer from the ``colabator`` section and the contrastive term of the
        ``trainer`` section."""
        cls.check_config(config)
        c = config.colabator
        t = cls.resolve_config(config).trainer
        return cls(dehazer, build_contrastive(t), ema_rate=c.ema_rate, supervised_weight=c.supervised_weight,
                   pseudo_weight=c.pseudo_weight, cr_weight=t.cr_weight,
                   augment=RandAugment(c.randaugment_ops, seed=config.run.seed))

    def prepare_experiment(self, config, supervised_ds, strategy=None):
        """For ``experiment.run``: (training dataset, extra callbacks) of a Colabator run.

        The training dataset zips ``supervised_ds`` with the real images + pool labels; the
        callbacks refresh the pool, log its statistics per epoch and save the teacher. Under a
        multi-worker strategy only the chief refreshes and writes the pool (see label_pool).
        """
        from keras_dehaze.callbacks import LabelPoolLogger, PseudoLabelRefresh, TeacherCheckpoint
        from keras_dehaze.data.real_hazy import RealHazySet, real_label_dataset
        from keras_dehaze.quality import build_density, build_quality

        chief = is_chief(strategy)
        c = config.colabator
        folders = [f for f in c.real if f]
        if not folders:
            raise ConfigError("colabator.real is empty: give folder(s) of real hazy images (--set colabator.real=PATH)")
        real = RealHazySet(folders)
        size = int(c.real_size)
        pool_dir = c.pool_dir or os.path.join(config.run.out_dir, "label_pool")
        pool = OptimalLabelPool(pool_dir, writable=chief, meta={"label_size": [size, size]})
        density = build_density(c.density, window=c.density_window)
        quality = build_quality(c.quality)
        real_ds = real_label_dataset(real, pool, c.real_batch_size or config.data.batch_size, size,
                                     seed=config.run.seed, num_ops=c.randaugment_ops, cache=config.data.cache)
        train_ds = tf.data.Dataset.zip((supervised_ds, real_ds)) if supervised_ds is not None else real_ds
        callbacks = [
            PseudoLabelRefresh(self.teacher, pool, real, size, density, quality, every=c.refresh_every,
                               grid=c.grid, temperature=c.trust_temperature, chunk=c.refresh_chunk,
                               log_path=os.path.join(config.run.out_dir, "label_pool_log.jsonl"),
                               enabled=chief),
            LabelPoolLogger(pool),
            TeacherCheckpoint(self.teacher, os.path.join(config.run.out_dir, "teacher.keras")),
        ]
        return train_ds, callbacks


__all__ = ["ColabatorTrainer", "PretrainedWeightsError", "load_pretrained_weights"]
