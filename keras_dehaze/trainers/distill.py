"""Distillation: any student network learns from a frozen pretrained teacher (and from ground
truth where there is some)."""

import os

from keras_dehaze.backend import keras, tf
from keras_dehaze.config import ConfigError
from keras_dehaze.data.training_data import log
from keras_dehaze.trainers.base import CR_SETTINGS, Trainer, register_trainer
from keras_dehaze.trainers.common import as_outputs, average, build_contrastive, capped_psnr, multiscale_l1, ssim


@register_trainer("distill")
class DistillTrainer(Trainer):
    """Wraps a student dehazer; the frozen ``teacher`` labels every training input.

    Per example, with ``has_gt`` 1 for pairs and 0 for images without ground truth:
    ``loss = has_gt * (gt_weight * L1(s, J) + (1 - gt_weight) * L1(s, T(I)))
    + (1 - has_gt) * L1(s, T(I)) + cr_weight * CR(s, positive, I)``,
    where ``s`` is the student output, ``T(I)`` the teacher's output on the same hazy input and
    the CR positive is J for pairs and T(I) otherwise. ``test_step`` reports the student's and
    the teacher's PSNR/SSIM against the ground truth, and their agreement (PSNR student vs
    teacher).

    Training data are ``(hazy, clear, has_gt)`` batches (``clear`` is ignored where has_gt is
    0); plain ``(hazy, clear)`` batches count as pairs.

    Args:
        dehazer: the student, a ``keras.Model`` (one output or a list of scales).
        teacher: a frozen ``keras.Model`` mapping hazy RGB in [0, 1] to RGB in [0, 1].
        contrastive: a ``ContrastiveRegularization`` or None.
        cr_weight: weight of the CR term (0: off).
        gt_weight: share of the ground-truth L1 on pairs (1: pairs ignore the teacher).

    Example:
        >>> trainer = DistillTrainer(AECRNet(), pretrained.load_pretrained("lkdnet_s_mixed"))
        >>> trainer.compile(optimizer=keras.optimizers.Adam(2e-4))

    Reference:
        Hinton et al., "Distilling the Knowledge in a Neural Network", 2015 (output matching);
        for dehazing, Hong et al., "Distilling Image Dehazing with Heterogeneous Task
        Imitation", CVPR 2020.
    """

    config_section = "distill"
    folder_settings = ("distill.hazy",)
    trainer_settings = CR_SETTINGS
    trainer_defaults = {"cr_weight": 0.0, "features": "vgg19"}
    train_metrics = ("loss", "l1_gt", "l1_teacher", "cr")
    test_metrics = ("psnr", "ssim", "teacher_psnr", "teacher_ssim", "agreement_psnr")

    def __init__(self, dehazer, teacher, contrastive=None, cr_weight=0.0, gt_weight=0.5, **kwargs):
        super().__init__(dehazer, **kwargs)
        teacher.trainable = False
        # Kept out of Keras tracking: the frozen teacher and VGG must not land in checkpoints.
        object.__setattr__(self, "_teacher", teacher)
        object.__setattr__(self, "_contrastive", contrastive)
        self.cr_weight = float(cr_weight)
        self.gt_weight = float(gt_weight)
        mean = keras.metrics.Mean
        self.loss_tracker, self.gt_tracker, self.teacher_tracker = mean("loss"), mean("l1_gt"), mean("l1_teacher")
        self.cr_tracker = mean("cr")
        self.psnr_tracker, self.ssim_tracker = mean("psnr"), mean("ssim")
        self.teacher_psnr_tracker, self.teacher_ssim_tracker = mean("teacher_psnr"), mean("teacher_ssim")
        self.agreement_tracker = mean("agreement_psnr")

    @property
    def teacher(self):
        return self._teacher

    @property
    def contrastive(self):
        return self._contrastive

    @property
    def metrics(self):
        return [self.loss_tracker, self.gt_tracker, self.teacher_tracker, self.cr_tracker, self.psnr_tracker,
                self.ssim_tracker, self.teacher_psnr_tracker, self.teacher_ssim_tracker, self.agreement_tracker]

    def describe(self):
        cr = f" + {self.cr_weight} x CR ({self.contrastive.describe()})" if self.contrastive is not None else ""
        return (f"distillation from {self.teacher.name} ({self.teacher.count_params():,} parameters): "
                f"pairs {self.gt_weight:g} x L1(GT) + {1 - self.gt_weight:g} x L1(teacher), "
                f"images without GT L1(teacher){cr}")

    def per_example_losses(self, data, training=True):
        """(total, L1 to GT, L1 to teacher, CR), each [B]."""
        hazy, clear, has_gt = _unpack(data)
        target = tf.stop_gradient(self.teacher(hazy, training=False))
        outputs = as_outputs(self.dehazer(hazy, training=training))
        l1_gt = multiscale_l1(outputs, clear)
        l1_teacher = multiscale_l1(outputs, target)
        total = has_gt * (self.gt_weight * l1_gt + (1.0 - self.gt_weight) * l1_teacher) + (1.0 - has_gt) * l1_teacher
        cr = tf.zeros_like(total)
        if self.contrastive is not None and self.cr_weight:
            positive = tf.where(has_gt[:, None, None, None] > 0, clear, target)
            cr = self.contrastive(outputs[0], positive, hazy)
        return total + self.cr_weight * cr, l1_gt * has_gt, l1_teacher, cr

    def train_step(self, data):
        with tf.GradientTape() as tape:
            total, l1_gt, l1_teacher, cr = self.per_example_losses(data, training=True)
            loss = average(total)
        grads = tape.gradient(loss, self.dehazer.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.dehazer.trainable_variables))
        for tracker, value in zip((self.loss_tracker, self.gt_tracker, self.teacher_tracker, self.cr_tracker),
                                  (total, l1_gt, l1_teacher, cr)):
            tracker.update_state(value)
        return self.metric_results(self.train_metrics)

    def test_step(self, data):
        hazy, clear = data[0], data[1]
        student = tf.clip_by_value(as_outputs(self.dehazer(hazy, training=False))[0], 0.0, 1.0)
        teacher = tf.clip_by_value(self.teacher(hazy, training=False), 0.0, 1.0)
        self.psnr_tracker.update_state(capped_psnr(student, clear))
        self.ssim_tracker.update_state(ssim(student, clear))
        self.teacher_psnr_tracker.update_state(capped_psnr(teacher, clear))
        self.teacher_ssim_tracker.update_state(ssim(teacher, clear))
        self.agreement_tracker.update_state(capped_psnr(student, teacher))
        return self.metric_results(self.test_metrics)

    # ---- experiment hooks (keras_dehaze.experiment) ----
    @classmethod
    def from_experiment_config(cls, config, dehazer):
        """Builds the trainer from the ``distill`` section (teacher by preset name or file) and the
        contrastive term of the ``trainer`` section (off unless ``trainer.cr_weight`` is set)."""
        c = config.distill
        if not c.teacher:
            raise ConfigError("distill.teacher is empty: give a preset name (e.g. lkdnet_s_mixed) or a .keras file")
        if not 0.0 <= c.gt_weight <= 1.0:
            raise ConfigError(f"distill.gt_weight must be in [0, 1], got {c.gt_weight}")
        teacher = load_teacher(c.teacher)
        t = cls.resolve_config(config).trainer
        return cls(dehazer, teacher, build_contrastive(t), cr_weight=t.cr_weight, gt_weight=c.gt_weight)

    def prepare_experiment(self, config, paired_ds, strategy=None):
        """Pairs become (hazy, clear, 1); images of ``distill.hazy`` (no ground truth) are
        mixed in as (hazy, zeros, 0) batches, ``distill.unlabelled_fraction`` of all batches."""
        from keras_dehaze.data.pipeline import image_dataset
        from keras_dehaze.data.unpaired import list_hazy

        c, d = config.distill, config.data
        labelled = paired_ds.map(lambda hazy, clear: (hazy, clear, tf.ones([tf.shape(hazy)[0]])))
        folders = [f for f in c.hazy if f]
        if not folders:
            return labelled, []
        if not 0.0 < c.unlabelled_fraction < 1.0:
            raise ConfigError(f"distill.unlabelled_fraction must be in (0, 1) with distill.hazy set, got "
                              f"{c.unlabelled_fraction}")
        paths, small = _large_enough(list_hazy(folders), d.crop_size)
        if not paths:
            raise ConfigError(f"no image in distill.hazy is at least {d.crop_size} pixels a side")
        log(f"distill: {len(paths)} images without ground truth from {', '.join(folders)}"
            + (f" ({small} smaller than the {d.crop_size}-pixel crop skipped)" if small else ""))
        hazy = image_dataset(paths, d.batch_size, crop_size=d.crop_size, augment=d.augment, seed=config.run.seed,
                             repeat=True, cache=d.cache, drop_remainder=True)
        unlabelled = hazy.map(lambda x: (x, tf.zeros_like(x), tf.zeros([tf.shape(x)[0]])))
        mixed = tf.data.Dataset.sample_from_datasets(
            [labelled, unlabelled], weights=[1.0 - c.unlabelled_fraction, c.unlabelled_fraction], seed=config.run.seed)
        return mixed, []


def load_teacher(spec):
    """A frozen teacher from a preset name (or alias) or a ``.keras`` file."""
    from keras_dehaze import pretrained

    if pretrained.is_preset(spec):
        teacher = pretrained.load_pretrained(spec)
    elif os.path.isfile(spec) and spec.endswith((".keras", ".h5")):
        from keras_dehaze.inference import load_keras_model

        teacher = load_keras_model(spec)
    else:
        raise ConfigError(f"distill.teacher {spec!r} is neither a preset ({', '.join(pretrained.available())}) "
                          "nor a .keras file")
    teacher.trainable = False
    return teacher


def _unpack(data):
    if len(data) == 3:
        hazy, clear, has_gt = data
        return hazy, clear, tf.cast(has_gt, tf.float32)
    hazy, clear = data
    return hazy, clear, tf.ones([tf.shape(hazy)[0]])


def _large_enough(paths, crop):
    """Paths of images whose shorter side is at least ``crop`` (header read only), and the
    number of smaller ones."""
    import cv2

    keep = []
    for path in paths:
        image = cv2.imread(path, cv2.IMREAD_REDUCED_GRAYSCALE_8)  # cheap: 1/8 decode gives the size
        if image is not None and min(image.shape[:2]) * 8 >= crop + 8:
            keep.append(path)
    return keep, len(paths) - len(keep)
