"""Data: image I/O, dataset pairing, tf.data pipelines.

`image_io` and `pairing` need only numpy and OpenCV; the tf.data pipelines are imported lazily
(on first use of their names) so that e.g. the edge runner can read images without TensorFlow.
"""

import importlib

from keras_dehaze.data.image_io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    ImageWriteError,
    read_image,
    write_image,
)
from keras_dehaze.data.pairing import (
    LAYOUTS,
    DatasetError,
    Pair,
    find_pairs,
    list_images,
    split_by_scene,
)

_LAZY = {"paired_dataset", "validation_dataset", "image_dataset"}


def __getattr__(name):
    """Imports the TensorFlow pipelines on first access (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module("keras_dehaze.data.pipeline"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "DatasetError",
    "ImageReadError",
    "ImageWriteError",
    "Pair",
    "find_pairs",
    "image_dataset",
    "list_images",
    "paired_dataset",
    "read_image",
    "split_by_scene",
    "validation_dataset",
    "write_image",
]
