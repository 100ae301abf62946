"""tf.distribute strategy selection by name (config ``run.strategy``), and who writes files.

Multi-worker training (``multi_worker``) runs the same program on every machine; each reads its
role from the ``TF_CONFIG`` environment variable, e.g. on the first of two workers::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'

Every worker must run every step (the gradients are all-reduced), so every worker also runs the
callbacks, but only the chief may write into ``run.out_dir``: the others write into a temporary
directory that is deleted afterwards (the Keras multi-worker pattern, see ``worker_write_dir``).
``BackupAndRestore`` does the same for its backups by itself.
"""

import os
import shutil
import tempfile

from keras_dehaze.backend import tf

# No TPU strategy: nothing here was ever run on a TPU, and the training stack assumes a host
# that reads local files (tf.numpy_function image readers and label-pool lookups, depth caches
# and backups on a local or shared POSIX filesystem) and validation images of varying sizes,
# none of which a TPU worker provides as is.
STRATEGIES = ("default", "mirrored", "multi_worker")

# One MultiWorkerMirroredStrategy per process: its collective ops are configured once, at
# program start-up; a second instance would reconfigure them (TF warns that previously created
# tensors may then fail).
_MULTI_WORKER = None


def make_strategy(name="default"):
    """default: one device; mirrored: all local GPUs (or CPUs if none);
    multi_worker: MultiWorkerMirroredStrategy configured by TF_CONFIG (created once per process).

    Raises:
        ValueError: any other name (``STRATEGIES`` lists the known ones).
    """
    global _MULTI_WORKER
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if _MULTI_WORKER is None:
            _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy()
        return _MULTI_WORKER
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def replicate_batches(dataset, replicas):
    """Evaluation under a multi-replica strategy: each element of a batch-of-1 dataset (full
    validation images, each its own size) becomes a batch of ``replicas`` copies of it.

    A global batch of 1 split over 2 replicas leaves one replica an empty batch whose unknown
    image dims are 0, which the networks' reflect padding rejects (and a worker without data
    breaks the collective ops). With one copy per replica every replica scores the same
    image, so the all-reduced means (PSNR, SSIM) equal the single-device ones.
    """
    if replicas <= 1:
        return dataset
    return dataset.unbatch().flat_map(
        lambda *element: tf.data.Dataset.from_tensors(element).repeat(replicas)).batch(replicas)


def task(strategy):
    """(task type, task id) of this process in a multi-worker cluster; (None, None) otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy):
    """True for single-process strategies (and for ``None``: no strategy), and in a cluster for
    the task that writes the checkpoints: type "chief", or worker 0 when the cluster has no chief
    (TF's own rule, ``strategy.extended.should_checkpoint``)."""
    return strategy is None or bool(strategy.extended.should_checkpoint)


def worker_write_dir(out_dir, strategy):
    """Where this process writes run files (checkpoints, logs, summary).

    The chief (or a single process) writes into ``out_dir``, created here (OSError if it cannot
    be). A non-chief worker gets a fresh temporary directory outside ``out_dir``: it still
    runs the same callbacks (a save may need collective ops), but what it writes never clashes
    with the chief's files; remove it with ``remove_worker_write_dir`` when done.
    """
    if is_chief(strategy):
        os.makedirs(out_dir, exist_ok=True)
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied (not writable)", out_dir)
        return out_dir
    _, task_id = task(strategy)
    return tempfile.mkdtemp(prefix=f"keras_dehaze_workertemp_{task_id}_")


def remove_worker_write_dir(write_dir, out_dir):
    """Deletes a non-chief worker's temporary directory (never ``out_dir`` itself)."""
    if os.path.abspath(write_dir) != os.path.abspath(out_dir):
        shutil.rmtree(write_dir, ignore_errors=True)
