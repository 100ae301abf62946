"""Training callbacks: dehazer checkpoints (latest and best), a NaN guard, a backup callback
that refuses non-finite weights and checks a backup before restoring it, the weight average swap
(``optim.ema``), and Colabator's pseudo-label refresh, label-pool statistics and teacher
checkpoint."""

import json
import math
import os
import time

import numpy as np

from keras_dehaze.atomic import atomic_path, atomic_write
from keras_dehaze.backend import keras, tf
from keras_dehaze.data.real_hazy import RealHazySet
from keras_dehaze.quality.trust import score_label


class CheckpointError(ValueError):
    """A checkpoint or training backup cannot be used: unreadable (corrupt, truncated) or made
    for another model."""


def weights_finite(model):
    """True when every weight of ``model`` is finite (no NaN / inf)."""
    return all(bool(tf.reduce_all(tf.math.is_finite(w)).numpy()) for w in model.weights
               if w.dtype.is_floating)


def save_model_atomic(model, path):
    """Saves a .keras file via a temporary name (``keras_dehaze.atomic``), so a kill mid-write never
    leaves a truncated checkpoint under the real name."""
    with atomic_path(path, tmp=f"{path}.tmp.keras") as tmp:  # a fixed name: a leftover is reused
        model.save(tmp)


class DehazerCheckpoint(keras.callbacks.Callback):
    """Writes ``latest.keras`` each epoch and ``best.keras`` when the monitored metric improves.

    Only the dehazing network is saved (float model, the source of truth for export), not the
    trainer. The best value lives in ``best.json`` so it survives restarts.
    """

    def __init__(self, dehazer, out_dir, monitor="val_psnr"):
        super().__init__()
        self.dehazer, self.out_dir, self.monitor = dehazer, out_dir, monitor
        self.state_path = os.path.join(out_dir, "best.json")
        self.best = -math.inf
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                self.best = json.load(f)["value"]

    def on_epoch_end(self, epoch, logs=None):
        if not weights_finite(self.dehazer):  # the loss may still be finite at this batch
            step = int(self.model.optimizer.iterations.numpy()) if self.model is not None else "?"
            raise NonFiniteLossError(
                f"the weights became NaN/inf by optimizer step {step} (epoch {epoch + 1}); stopped without "
                "saving them. The last good checkpoint is kept: lower the learning rate or set "
                "optim.clipnorm, then rerun to resume.")
        save_model_atomic(self.dehazer, os.path.join(self.out_dir, "latest.keras"))
        value = (logs or {}).get(self.monitor)
        if value is not None and math.isfinite(value) and value > self.best:
            self.best = float(value)
            save_model_atomic(self.dehazer, os.path.join(self.out_dir, "best.keras"))
            atomic_write(self.state_path,
                         json.dumps({"monitor": self.monitor, "value": self.best, "epoch": epoch + 1}))


class NonFiniteLossError(FloatingPointError):
    pass


class WeightAverage:
    """Puts the optimizer's moving average of the weights (``optim.ema``) into the model for
    validation and checkpoints, and the raw weights back for training and backups.

    A tf_keras optimizer built with ``use_ema=True`` updates the average after every step but
    copies it into the model only when ``fit`` ends (``finalize_variable_values``). ``callbacks()``
    gives two callbacks: the first swaps the average in for each validation (and back out after
    it) and again at each epoch end; put it before ``DehazerCheckpoint``. The second swaps the raw
    weights back at the epoch end; put it after the checkpoint and the CSV logger and before the
    backup's epoch-end callback, so a backup always holds the raw weights plus the average (the
    optimizer's slot) and a resumed run continues exactly.
    """

    def __init__(self, optimizer, variables):
        if not getattr(optimizer, "use_ema", False):
            raise ValueError("WeightAverage needs an optimizer built with use_ema=True")
        self.optimizer, self.variables = optimizer, list(variables)
        self.average_in_model = False

    def _averages(self):
        opt = self.optimizer
        # Private tf_keras attributes (optimizer.py, build): the average of each variable lives at
        # its index; they exist once the first step built the optimizer.
        return [opt._model_variables_moving_average[opt._index_dict[opt._var_key(v)]] for v in self.variables]

    def _swap(self):
        if not hasattr(self.optimizer, "_model_variables_moving_average"):
            return False  # no step yet: the average is the weights themselves
        for var, average in zip(self.variables, self._averages()):
            raw = tf.identity(var)
            var.assign(average)
            average.assign(raw)
        return True

    def use_average(self):
        if not self.average_in_model:
            self.average_in_model = self._swap()

    def use_raw(self):
        if self.average_in_model:
            self._swap()
            self.average_in_model = False

    def callbacks(self):
        return _AverageIn(self), _AverageOut(self)


class _AverageIn(keras.callbacks.Callback):
    def __init__(self, average):
        super().__init__()
        self.average = average

    def on_test_begin(self, logs=None):
        self.average.use_average()

    def on_test_end(self, logs=None):
        self.average.use_raw()

    def on_epoch_end(self, epoch, logs=None):
        self.average.use_average()


class _AverageOut(keras.callbacks.Callback):
    def __init__(self, average):
        super().__init__()
        self.average = average

    def on_epoch_end(self, epoch, logs=None):
        self.average.use_raw()


class NaNGuard(keras.callbacks.Callback):
    """Stops with an error naming the step when the loss is NaN/inf.

    Raising (rather than TerminateOnNaN's quiet stop) means no callback after it writes a
    checkpoint of the broken weights: the last good backup and ``latest.keras`` stay intact.
    """

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            step = int(self.model.optimizer.iterations.numpy())
            raise NonFiniteLossError(
                f"loss became {loss} at optimizer step {step} (epoch {self.epoch + 1}, batch {batch + 1}); "
                "stopped without saving these weights. The last good checkpoint is kept: lower the "
                "learning rate or set optim.clipnorm, then rerun to resume."
            )


def validate_backup(model, backup_dir):
    """Checks the newest ``BackupAndRestore`` backup in ``backup_dir`` before it is restored.

    Keras restores a backup non-strictly: variables of ``model`` that the backup does not hold
    keep their fresh values, so resuming a run directory with another architecture would
    silently continue from random weights with the old step count. This reads every tensor of
    the backup (a truncated or corrupt file fails here, with its name) and restores it into
    ``model`` requiring every existing variable to be matched (the restore that follows in
    ``BackupAndRestore`` writes the same values again). The optimizer is part of the model: a
    learning-rate variable (constant schedule) where the backup had a schedule is a mismatch too,
    as Keras documents that changed compile arguments invalidate a backup.

    Returns the checkpoint prefix restored, or None when there is no backup.

    Raises:
        CheckpointError: naming the backup, what is wrong, and what to do.
    """
    chief_dir = os.path.join(backup_dir, "chief")  # where BackupAndRestore keeps its checkpoint
    if not os.path.isdir(chief_dir):
        return None
    start_over = (f"Delete {backup_dir} to start this run over (its latest.keras/best.keras stay), or "
                  "use a new run.out_dir.")
    try:
        prefix = tf.train.latest_checkpoint(chief_dir)
    except Exception as e:  # noqa: BLE001  (a text-proto parse error, an unreadable file)
        raise CheckpointError(f"the training backup in {chief_dir} is unreadable: its 'checkpoint' index "
                              f"file is corrupt ({type(e).__name__}: {e}). {start_over}") from None
    if prefix is None:
        if any(name.startswith("ckpt") for name in os.listdir(chief_dir)):
            raise CheckpointError(f"the training backup in {chief_dir} has checkpoint files but no valid "
                                  f"'checkpoint' index file. {start_over}")
        return None
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # noqa: BLE001  (OpError, IndexError "read less bytes", ... all mean unreadable)
        raise CheckpointError(f"the training backup {prefix} is corrupt or truncated (a kill or a full disk "
                              f"while it was copied?): {type(e).__name__}: {_first_line(e)}. {start_over}") from None
    problem = _trial_restore(model, prefix)
    if problem is not None:
        raise CheckpointError(
            f"the training backup {prefix} was made for another model, trainer or optimizer than the "
            f"configured {model.name!r}: {problem}. Resume with the configuration of that run (its "
            f"model.name/model.args, trainer and optim.schedule), or {start_over[0].lower()}{start_over[1:]}")
    return prefix


def _trial_restore(model, prefix):
    """Restores ``prefix`` into ``model`` requiring every existing variable to be matched;
    returns None, or what does not match. TensorFlow's warnings about checkpoint values left
    unused (the backup's counters; every value when the model differs) are silenced."""
    try:
        status = tf.train.Checkpoint(model=model).restore(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
        return None
    except Exception as e:  # noqa: BLE001  (shape mismatch ValueError, unmatched objects AssertionError, ...)
        # A restore that failed half-way stays attached to the model's objects; when they are
        # collected, TensorFlow logs one warning per checkpoint value (hundreds) about it. The
        # run stops here with a clear error, so drop that noise.
        tf.get_logger().addFilter(_UnusedCheckpointValuesFilter())
        return f"{type(e).__name__}: {_first_line(e, 400)}"


class _UnusedCheckpointValuesFilter:
    NOISE = ("Value in checkpoint could not be found in the restored object",
             "is being deleted with unrestored values")

    def filter(self, record):
        return not any(text in record.getMessage() for text in self.NOISE)


def _first_line(error, limit=300):
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


class CheckedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that validates the backup before restoring it (``validate_backup``:
    clear errors for a corrupt backup or one of another model/optimizer) and never backs up
    non-finite weights (it raises ``NonFiniteLossError`` instead, so the last good backup stays).

    Epoch-end ordering: Keras backs up an epoch's end BEFORE the callbacks after it write that
    epoch's checkpoint and log row, so a kill in between resumes at the next epoch and that
    epoch's ``latest.keras`` and log row are never written (after the last epoch: a final
    ``latest.keras`` one epoch old). Put ``after_epoch_callback()`` LAST in the callback list:
    the backup that marks an epoch done is then written after everything else of that epoch
    (a kill in between re-runs the end of the epoch: its log row may appear twice, never zero
    times).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._defer_epoch_end = False
        self._pending = None

    def on_train_begin(self, logs=None):
        validate_backup(self.model, self.backup_dir)
        self._pending = None
        super().on_train_begin(logs)

    def after_epoch_callback(self):
        """The callback that writes the epoch-end backup; put it last in the list."""
        self._defer_epoch_end = True
        return _EpochEndBackup(self)

    def _backup(self, epoch, batch=0):
        steps = (self.params or {}).get("steps")
        at_epoch_end = self.save_freq == "epoch" or (steps is not None and batch + 1 >= steps)
        if self._defer_epoch_end and at_epoch_end:
            self._pending = (epoch, batch)
            return
        self._write(epoch, batch)

    def _write(self, epoch, batch):
        if not weights_finite(self.model):
            step = int(self.model.optimizer.iterations.numpy())
            raise NonFiniteLossError(
                f"the weights became NaN/inf by optimizer step {step} (epoch {epoch + 1}, batch {batch + 1}); "
                "stopped without backing them up. The last good backup and checkpoint are kept: lower the "
                "learning rate or set optim.clipnorm, then rerun to resume.")
        super()._backup(epoch, batch)

    def _flush(self):
        if self._pending is not None:
            epoch, batch = self._pending
            self._pending = None
            self._write(epoch, batch)


class _EpochEndBackup(keras.callbacks.Callback):
    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def on_epoch_end(self, epoch, logs=None):
        self.backup._flush()


# ------------------------------------------------------------------- Colabator (mean teacher)
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
        from keras_dehaze.trainers.common import as_outputs  # here: the trainers import this module

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
        save_model_atomic(self.teacher, self.path)
