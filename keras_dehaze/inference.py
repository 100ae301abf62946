"""Dehazing whole images of any size with any model: bundled, .keras, .tflite, or DCP.

Every dehazer maps an HxWx3 float32 RGB image in [0, 1] to the same. Large images are processed
in overlapping tiles blended without seams (``keras_dehaze.tiling``), so memory stays bounded.

Every dehazer also accepts uint8/uint16 images (as ``read_image_raw`` returns them: scaled to
[0, 1] tile by tile) and ``dtype=np.uint8``/``np.uint16`` to return pixels instead of floats;
together they keep a 12000x9000 photo at about 1 GB of arrays (8-bit photo, 8-bit result,
the PNG encoder's copy) instead of about 5 GB.
"""

import os

import numpy as np

from keras_dehaze import pretrained, tiling

DEFAULT_TILE = 1024  # Keras models: tile side for large images (memory bound)
BASELINES = ("identity", "dcp")
_INT_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def as_unit_float(image):
    """float32 RGB in [0, 1] from a float image or uint8/uint16 pixels (/ 255, / 65535)."""
    image = np.asarray(image)
    scale = _INT_SCALES.get(image.dtype)
    if scale is None:
        return np.asarray(image, np.float32)
    out = image.astype(np.float32)
    out /= np.float32(scale)
    return out


def to_dtype(image, dtype=np.float32):
    """A float result clipped to [0, 1] as ``dtype``: float32, or uint8/uint16 pixels rounded
    like ``write_image`` (``round(clip(x, 0, 1) * 255)``)."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)
    if dtype not in _INT_SCALES:
        raise ValueError(f"dtype must be float32, uint8 or uint16, got {dtype}")
    return np.round(np.clip(image, 0.0, 1.0).astype(np.float32) * _INT_SCALES[dtype]).astype(dtype)


class ModelLoadError(ValueError):
    pass


class IdentityDehazer:
    """The hazy input itself: the floor every dehazer must beat in a results table."""

    name = "identity"

    def __call__(self, image, dtype=np.float32):
        return to_dtype(as_unit_float(image), dtype)


class DCPDehazer:
    """He et al.'s dark channel prior with guided-filter refinement (keras_dehaze.physics.dcp)."""

    name = "dcp"

    def __call__(self, image, dtype=np.float32):
        from keras_dehaze.physics.dcp import dehaze_dcp

        out = dehaze_dcp(as_unit_float(image))[0].astype(np.float32)
        return out if np.dtype(dtype) == np.float32 else to_dtype(out, dtype)


class KerasDehazer:
    """A Keras network (single- or multi-output: the full-resolution output is used)."""

    def __init__(self, model, name=None, tile=DEFAULT_TILE, overlap=32, multiple=4):
        from keras_dehaze.backend import tf

        self.model, self.name = model, name or model.name
        self.tile, self.overlap, self.multiple = tile, overlap, multiple
        self._fn = tf.function(
            lambda x: self._first(model(x, training=False)),
            input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)],
        )

    @staticmethod
    def _first(outputs):
        return outputs[0] if isinstance(outputs, (list, tuple)) else outputs

    def _run(self, batch):
        return self._fn(batch).numpy()

    def __call__(self, image, dtype=np.float32):
        """``image``: RGB float in [0, 1] or uint8/uint16; returns float32 in [0, 1] or, with
        ``dtype=np.uint8``/``np.uint16``, pixels (written row band by row band for tiled images:
        no full-size float array)."""
        image = np.asarray(image)
        h, w = image.shape[:2]
        if h <= self.tile and w <= self.tile:
            return to_dtype(self._run(as_unit_float(image)[None])[0], dtype)
        if np.dtype(dtype) != np.float32:
            return tiling.dehaze_tiled(image, self._run, self.tile, self.overlap, self.multiple, out_dtype=dtype)
        out = tiling.dehaze_tiled(image, self._run, self.tile, self.overlap, self.multiple)
        return np.clip(out, 0.0, 1.0, out=out)


def load_keras_model(path):
    """Loads a .keras file in safe mode (no lambda layers or arbitrary code), with clear errors."""
    if not os.path.exists(path):
        raise ModelLoadError(f"model file not found: {path}")
    from keras_dehaze import layers  # noqa: F401  (registers the custom layers)
    from keras_dehaze.backend import keras

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001  (h5py/zip/deserialisation errors vary)
        raise ModelLoadError(f"{path} is not a loadable keras-dehaze model: {type(e).__name__}: {e}") from None


def load_dehazer(spec=None, threads=None, tile=DEFAULT_TILE):
    """``spec``: None/"aecrnet" (bundled default), a bundled name, "dcp", "identity",
    a path to a ``.keras`` or ``.tflite`` file."""
    spec = spec or pretrained.DEFAULT
    if spec == "identity":
        return IdentityDehazer()
    if spec == "dcp":
        return DCPDehazer()
    if spec.endswith(".keras"):
        model = load_keras_model(spec)
        return KerasDehazer(model, name=os.path.basename(spec), tile=tile)
    if spec.endswith(".tflite"):
        from keras_dehaze.edge_runner import TFLiteDehazer

        if not os.path.exists(spec):
            raise ModelLoadError(f"model file not found: {spec}")
        try:
            return TFLiteDehazer(spec, threads=threads)
        except (ImportError, OSError, ValueError) as e:
            raise ModelLoadError(f"{spec}: {e}") from None
    name = pretrained.resolve(spec)
    if name not in pretrained.available():
        raise ModelLoadError(
            f"unknown model {spec!r}: give a bundled name ({', '.join(pretrained.available() + list(BASELINES))}), "
            "a .keras file or a .tflite file"
        )
    return KerasDehazer(pretrained.load_pretrained(name), name=name, tile=tile)
