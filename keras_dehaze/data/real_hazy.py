"""Real hazy images without ground truth, for Colabator fine-tuning: a stable id per image
(``RealHazySet``) and the tf.data pipeline that pairs each image with its current pseudo-label
from the optimal label pool (``real_label_dataset``).

The pool itself is ``keras_dehaze.trainers.label_pool.OptimalLabelPool``; the callback that
fills it is ``keras_dehaze.callbacks.PseudoLabelRefresh``.
"""

import os

import cv2
import numpy as np

from keras_dehaze.backend import tf
from keras_dehaze.data.image_io import read_image
from keras_dehaze.data.pairing import list_images
from keras_dehaze.data.randaugment import rand_augment


class RealHazySet:
    """Real hazy images without ground truth, each with a stable id ``<folder name>/<relative path>``.

    Args:
        folders: folder(s) of images (``list_images``: a ``JPEGImages/`` subfolder is found too).
        recursive: search subfolders.
    """

    def __init__(self, folders, recursive=False):
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


__all__ = ["RealHazySet", "real_label_dataset"]
