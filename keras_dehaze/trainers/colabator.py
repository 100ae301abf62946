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

Pseudo-labels OUTSIDE the compiled step (``PseudoLabelRefresh`` callback): every
``refresh_every`` optimizer steps (and once before training) the teacher dehazes the real images
(resized to the training size), each output is scored on an N x N patch grid - haze density D
(dark channel, lower = clearer) and quality Q (100 - BRISQUE, higher = better), numpy/libsvm -
into a trust-weight map (``keras_dehaze.quality.trust``), and offered to the
``OptimalLabelPool``, which keeps it only if it beats the stored label in both image-level
scores. The training dataset (``real_label_dataset``) reads the current label and weight map of
each real image from the pool through ``tf.numpy_function`` in the tf.data pipeline.

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

import json
import os
import time

import cv2
import numpy as np

from keras_dehaze import pretrained
from keras_dehaze.backend import keras, tf
from keras_dehaze.data.image_io import read_image
from keras_dehaze.data.randaugment import RandAugment, rand_augment
from keras_dehaze.quality.trust import score_label
from keras_dehaze.trainers.common import as_outputs, average, capped_psnr, multiscale_l1, ssim
from keras_dehaze.trainers.label_pool import OptimalLabelPool


class PretrainedWeightsError(ValueError):
    """A pretrained checkpoint is missing, unreadable or of another architecture."""


# ---------------------------------------------------------------------------------- models
def clone_dehazer(dehazer, name=None):
    """A separate, non-trainable copy of ``dehazer`` with the same weights (the teacher)."""
    try:
        teacher = keras.models.clone_model(dehazer)
    except (ValueError, TypeError, NotImplementedError):  # subclassed models
        teacher = dehazer.__class__.from_config(dehazer.get_config())
        teacher.build(dehazer.input_shape)
    teacher.set_weights(dehazer.get_weights())
    teacher.trainable = False
    if name:
        teacher._name = name
    return teacher


def load_pretrained_weights(dehazer, path):
    """Copies the weights of a saved ``.keras``/``.h5`` dehazer, or of a network bundled with the
    package (its name, e.g. ``aecrnet_default``), into ``dehazer``.

    Raises:
        PretrainedWeightsError: the file is missing, cannot be loaded, or holds a network whose
            weights do not match ``dehazer`` one to one (another architecture or other args).
    """
    path = os.fspath(path)
    if not os.path.isfile(path) and pretrained.is_preset(path):
        source = pretrained.load_pretrained(path)
    else:
        source = _load_checkpoint(path)
    src, dst = source.weights, dehazer.weights
    problem = None
    if len(src) != len(dst):
        problem = f"{len(src)} weight tensors in the checkpoint, {len(dst)} in the configured model"
    else:
        for a, b in zip(src, dst):
            if a.shape != b.shape:
                problem = f"weight {a.name} has shape {a.shape} in the checkpoint, {b.name} {b.shape} in the model"
                break
    if problem is None:  # same weights, other layers: e.g. AE-CR-Net with and without global_residual
        differ = sorted(set(_layer_signature(source)) ^ set(_layer_signature(dehazer)))
        if differ:
            problem = "the layers differ: " + ", ".join(f"{cls} {name!r}" for cls, name in differ[:4])
    if problem:
        raise PretrainedWeightsError(
            f"{path} holds '{source.name}' ({source.count_params():,} parameters), which does not match the "
            f"configured model '{dehazer.name}' ({dehazer.count_params():,} parameters): {problem}. "
            "Set model.name / model.args to the checkpoint's architecture.")
    dehazer.set_weights(source.get_weights())
    return source


def _layer_signature(model):
    return [(type(layer).__name__, layer.name) for layer in model.layers]


def _load_checkpoint(path):
    if not os.path.isfile(path):
        raise PretrainedWeightsError(f"pretrained checkpoint not found: {path} (nor is it a bundled network: "
                                     f"{', '.join(pretrained.available()) or 'none'})")
    if not path.endswith((".keras", ".h5")):
        raise PretrainedWeightsError(f"{path}: expected a .keras (or .h5) file saved from a dehazer")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - any load failure gets the same clear message
        raise PretrainedWeightsError(f"cannot load pretrained checkpoint {path}: {type(e).__name__}: {e}") from e


# ---------------------------------------------------------------------------------- trainer
class ColabatorTrainer(keras.Model):
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

    def __init__(self, dehazer, contrastive=None, ema_rate=0.999, supervised_weight=1.0, pseudo_weight=1.0,
                 cr_weight=0.1, augment=None, teacher=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(ema_rate) <= 1.0:
            raise ValueError(f"ema_rate must be in [0, 1], got {ema_rate}")
        self.dehazer = dehazer
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

    def call(self, inputs, training=False):
        return self.dehazer(inputs, training=training)

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
        return {m.name: m.result() for m in self.metrics[:4]}

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
        return {m.name: m.result() for m in self.metrics[4:]}

    # ------------------------------------------------------------------ experiment glue
    @classmethod
    def from_experiment_config(cls, config, dehazer):
        """Builds the trainer from the ``colabator`` (and ``trainer.features``) config sections."""
        c = config.colabator
        if config.optim.ema:
            from keras_dehaze.config import ConfigError

            raise ConfigError("optim.ema is not for the colabator trainer: its teacher already is the moving "
                              "average of the student (colabator.ema_rate); set optim.ema: 0")
        contrastive = None
        if c.cr_weight > 0:
            from keras_dehaze.losses import ContrastiveRegularization

            contrastive = ContrastiveRegularization(config.trainer.features,
                                                    weights=config.trainer.feature_weights or None)
        return cls(dehazer, contrastive, ema_rate=c.ema_rate, supervised_weight=c.supervised_weight,
                   pseudo_weight=c.pseudo_weight, cr_weight=c.cr_weight,
                   augment=RandAugment(c.randaugment_ops, seed=config.run.seed))

    def prepare_experiment(self, config, supervised_ds, strategy=None):
        """For ``experiment.run``: (training dataset, extra callbacks) of a Colabator run.

        The training dataset zips ``supervised_ds`` with the real images + pool labels; the
        callbacks refresh the pool, log its statistics per epoch and save the teacher. Under a
        multi-worker strategy only the chief refreshes and writes the pool (see label_pool).
        """
        from keras_dehaze.config import ConfigError

        is_chief = _is_chief(strategy)
        c = config.colabator
        folders = [f for f in c.real if f]
        if not folders:
            raise ConfigError("colabator.real is empty: give folder(s) of real hazy images (--set colabator.real=PATH)")
        real = RealHazySet(folders)
        size = int(c.real_size)
        pool_dir = c.pool_dir or os.path.join(config.run.out_dir, "label_pool")
        pool = OptimalLabelPool(pool_dir, writable=is_chief, meta={"label_size": [size, size]})
        from keras_dehaze.quality import build_density, build_quality

        density = build_density(c.density, window=c.density_window)
        quality = build_quality(c.quality)
        real_ds = real_label_dataset(real, pool, c.real_batch_size or config.data.batch_size, size,
                                     seed=config.run.seed, num_ops=c.randaugment_ops, cache=config.data.cache)
        train_ds = tf.data.Dataset.zip((supervised_ds, real_ds)) if supervised_ds is not None else real_ds
        callbacks = [
            PseudoLabelRefresh(self.teacher, pool, real, size, density, quality, every=c.refresh_every,
                               grid=c.grid, temperature=c.trust_temperature, chunk=c.refresh_chunk,
                               log_path=os.path.join(config.run.out_dir, "label_pool_log.jsonl"),
                               enabled=is_chief),
            LabelPoolLogger(pool),
            TeacherCheckpoint(self.teacher, os.path.join(config.run.out_dir, "teacher.keras")),
        ]
        return train_ds, callbacks


def _is_chief(strategy):
    """True unless ``strategy`` is multi-worker and this task is not the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    jobs = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in jobs


# ---------------------------------------------------------------------------------- real data
class RealHazySet:
    """Real hazy images without ground truth, each with a stable id ``<folder name>/<relative path>``.

    Args:
        folders: folder(s) of images (``list_images``: a ``JPEGImages/`` subfolder is found too).
        recursive: search subfolders.
    """

    def __init__(self, folders, recursive=False):
        from keras_dehaze.data import list_images

        folders = [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
        self.ids, self.paths = [], []
        for folder in folders:
            folder = os.fspath(folder)
            prefix = os.path.basename(os.path.normpath(folder))
            for path in list_images(folder, recursive=recursive):
                label_id = f"{prefix}/{os.path.relpath(path, folder)}"
                k = 2
                while label_id in self.ids:  # two folders with the same name
                    label_id = f"{prefix}#{k}/{os.path.relpath(path, folder)}"
                    k += 1
                self.ids.append(label_id)
                self.paths.append(path)

    def __len__(self):
        return len(self.ids)

    @staticmethod
    def load(path, size):
        """One real image resized (area interpolation) to size x size, float32 RGB in [0, 1].

        The whole image is resized - as the reference code does (``cv2.resize`` to gt_size) -
        so a pseudo-label covers the whole scene and stays aligned with it; aspect ratios are not
        preserved."""
        image = read_image(os.fsdecode(path))
        return cv2.resize(image, (int(size), int(size)), interpolation=cv2.INTER_AREA).astype(np.float32)


def real_label_dataset(real, pool, batch_size, size, seed=0, num_ops=2, cache=False, prefetch=1):
    """Batches of dicts {"real", "strong", "label", "weights"} for ``ColabatorTrainer``.

    Real images (resized to size x size, shuffled per epoch from ``seed``) get a strong view
    (``rand_augment`` with per-element stateless seeds) and their CURRENT pool label and weight
    map, read from ``pool`` at the time the element is produced (``tf.numpy_function``). An
    image with no label yet gets itself as label and zero weights (it contributes no loss).

    Args:
        real: a ``RealHazySet``.
        pool: an ``OptimalLabelPool`` (may still be empty).
        batch_size: real images per batch (incomplete last batches are dropped).
        size: side of the resized images (labels must have this size).
        seed, num_ops: shuffling/augmentation seed and RandAugment n.
        cache: keep the resized images in memory (size * size * 12 bytes each).
        prefetch: batches prefetched (each may hold labels that many steps old).
    """
    size = int(size)

    def load(path):
        return RealHazySet.load(path, size)

    def lookup(label_id, image):
        found = pool.get_one(os.fsdecode(label_id))
        if found is None or found[0].shape != image.shape:
            return image, np.zeros(image.shape[:2] + (1,), np.float32)
        return found[0], found[1][..., None]

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(real.paths), tf.constant(real.ids)))

    def read(path, label_id):
        image = tf.numpy_function(load, [path], tf.float32, name="read_real_hazy")
        image.set_shape([size, size, 3])
        return image, label_id

    if cache:
        ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).cache()
    ds = ds.shuffle(len(real), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)))

    def prepare(element, element_seed):
        image, label_id = element if cache else read(*element)
        label, weights = tf.numpy_function(lookup, [label_id, image], [tf.float32, tf.float32], name="pool_label")
        label.set_shape([size, size, 3])
        weights.set_shape([size, size, 1])
        strong = rand_augment(image, tf.stack([element_seed, tf.constant(7, tf.int64)]), num_ops)
        strong.set_shape([size, size, 3])
        return {"real": image, "strong": strong, "label": label, "weights": weights}

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(int(batch_size), drop_remainder=True)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(prefetch)


# ---------------------------------------------------------------------------------- callbacks
class PseudoLabelRefresh(keras.callbacks.Callback):
    """Runs the teacher over the real images, scores its outputs and offers them to the pool.

    Once when training starts (every image gets a label; on a resumed run only better labels
    replace the stored ones) and then every ``every`` optimizer steps. ``history`` (and the
    optional JSON-lines ``log_path``) records per refresh: step, images offered, labels stored
    (new + replaced), replaced, the pool's size and mean D/Q, and the wall time.

    Args:
        teacher: the teacher network (``ColabatorTrainer.teacher``).
        pool: an ``OptimalLabelPool``.
        real: a ``RealHazySet``.
        size: side the real images are resized to (as in ``real_label_dataset``).
        density, quality: scorers (``keras_dehaze.quality``): density lower = clearer, quality
            higher = better; each with ``__call__`` and ``patch_scores``.
        every: optimizer steps between refreshes (0: only the initial one).
        grid, temperature: the trust-weight grid N and Psi's steepness.
        chunk: images per periodic refresh, round robin (0: all).
        batch_size: images per teacher forward pass.
        log_path: a .jsonl file to append refresh records to.
        enabled: False on non-chief workers (they only read the pool).
        verbose: print one line per refresh.
    """

    def __init__(self, teacher, pool, real, size, density, quality, every=100, grid=8, temperature=4.0, chunk=0,
                 batch_size=4, log_path=None, enabled=True, verbose=True):
        super().__init__()
        self.teacher, self.pool, self.real, self.size = teacher, pool, real, int(size)
        self.density, self.quality = density, quality
        self.every, self.grid, self.temperature = int(every), int(grid), float(temperature)
        self.chunk, self.batch_size = int(chunk), int(batch_size)
        self.log_path, self.enabled, self.verbose = log_path, bool(enabled), bool(verbose)
        self.history = []
        self._cursor = 0
        self._predict = tf.function(lambda x: as_outputs(teacher(x, training=False))[0], reduce_retracing=True)

    def _step(self):
        model = self.model
        if model is not None and getattr(model, "optimizer", None) is not None:
            return int(model.optimizer.iterations.numpy())
        return 0

    def on_train_begin(self, logs=None):
        if self.enabled:
            self.refresh(indices=range(len(self.real)))

    def on_train_batch_end(self, batch, logs=None):
        if not self.enabled or self.every <= 0:
            return
        step = self._step()
        if step > 0 and step % self.every == 0:
            self.refresh()

    def _next_indices(self):
        n = len(self.real)
        if self.chunk <= 0 or self.chunk >= n:
            return range(n)
        indices = [(self._cursor + i) % n for i in range(self.chunk)]
        self._cursor = (self._cursor + self.chunk) % n
        return indices

    def refresh(self, indices=None):
        """One refresh over ``indices`` (default: the next chunk); returns its record."""
        start = time.time()
        indices = list(self._next_indices() if indices is None else indices)
        before = self.pool.stats()
        items = []
        for first in range(0, len(indices), self.batch_size):
            batch = indices[first:first + self.batch_size]
            images = np.stack([RealHazySet.load(self.real.paths[i], self.size) for i in batch])
            outputs = np.clip(self._predict(tf.constant(images)).numpy(), 0.0, 1.0)
            for i, label in zip(batch, outputs):
                weights, d, q = score_label(label, self.density, self.quality, self.grid, self.temperature)
                items.append((self.real.ids[i], label, weights, d, q))
        stored = self.pool.offer_many(items)
        after = self.pool.stats()
        record = {
            "step": self._step(), "offered": len(items), "stored": int(sum(stored)),
            "replaced": after["replaced"] - before["replaced"], "count": after["count"],
            "mean_density": after["mean_density"], "mean_quality": after["mean_quality"],
            "offered_mean_density": float(np.mean([it[3] for it in items])) if items else float("nan"),
            "offered_mean_quality": float(np.mean([it[4] for it in items])) if items else float("nan"),
            "seconds": round(time.time() - start, 2),
        }
        self.history.append(record)
        if self.log_path:
            os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.verbose:
            print(f"[colabator] step {record['step']}: pseudo-labels for {record['offered']} real images, "
                  f"{record['stored']} stored ({record['replaced']} replaced); pool {record['count']} labels, "
                  f"mean D {record['mean_density']:.4f}, mean Q {record['mean_quality']:.2f} "
                  f"({record['seconds']} s)", flush=True)
        return record


class LabelPoolLogger(keras.callbacks.Callback):
    """Adds the pool's statistics to the epoch logs (CSV/TensorBoard) and resets its counters:
    ``pool_replaced`` (labels replaced during the epoch), ``pool_added``, ``pool_size``,
    ``pool_density`` and ``pool_quality`` (means over the stored labels). Put it before the
    CSVLogger in the callback list."""

    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def on_epoch_end(self, epoch, logs=None):
        stats = self.pool.stats()
        if logs is not None:
            logs.update({"pool_replaced": stats["replaced"], "pool_added": stats["added"], "pool_size": stats["count"],
                         "pool_density": stats["mean_density"], "pool_quality": stats["mean_quality"]})
        self.pool.reset_stats()


class TeacherCheckpoint(keras.callbacks.Callback):
    """Saves the teacher (the EMA model, often the better one to deploy) each epoch, atomically."""

    def __init__(self, teacher, path):
        super().__init__()
        self.teacher, self.path = teacher, path

    def on_epoch_end(self, epoch, logs=None):
        from keras_dehaze.callbacks import save_model_atomic

        save_model_atomic(self.teacher, self.path)


__all__ = [
    "ColabatorTrainer",
    "LabelPoolLogger",
    "PretrainedWeightsError",
    "PseudoLabelRefresh",
    "RealHazySet",
    "TeacherCheckpoint",
    "clone_dehazer",
    "load_pretrained_weights",
    "real_label_dataset",
]
