"""Dehazing whole images of any size with any model: bundled, .keras, .tflite, or DCP.

Every dehazer maps an HxWx3 float32 RGB image in [0, 1] to the same. Large images are processed
in overlapping tiles blended without seams (``keras_dehaze.tiling``), so memory stays bounded.

Every dehazer also accepts uint8/uint16 images (as ``read_image_raw`` returns them: scaled to
[0, 1] tile by tile) and ``dtype=np.uint8``/``np.uint16`` to return pixels instead of floats;
together they keep a 12000x9000 photo at about 1 GB of arrays (8-bit photo, 8-bit result,
the PNG encoder's copy) instead of about 5 GB.

Every dehazer's ``__call__`` also takes ``progress=fn``: ``fn(done, total)`` is called after
each tile (Keras, TFLite) or strip (DCP) of the image, so a caller can show progress within one
large photo.

This module imports TensorFlow only when a Keras model is loaded (``.tflite``, ``dcp`` and
``identity`` never need it).
"""

import os
import zipfile

import numpy as np

from keras_dehaze import pretrained, tiling
from keras_dehaze.edge.tflite_dehazer import ACCELERATORS, TFLiteDehazer

# Keras models: tile side for images larger than one tile. Peak memory = TensorFlow (~0.6 GB)
# + the activations of one tile (grows with its area: for the bundled AE-CR-Net about +0.2 GB
# at 256, +0.5 GB at 384, +1.0 GB at 512) + the 8-bit photo, its 8-bit result and the PNG
# encoder's buffers (~0.45 GB for 8000x6000). 256 keeps it under 1.5 GB on any photo size
# (/usr/bin/time -v on an 8000x6000 JPEG); --tile trades memory for speed.
DEFAULT_TILE = 256
# Networks with image-wide statistics (LKD-Net: LayerNorm over (C, H, W) and global pooling)
# process a tile differently from the whole photo (256 tiles: outputs only ~38 dB apart), so
# they get the largest tile the memory bound allows: LKD-S peaks at about 0.6 GB + 1.3 GB per
# megapixel, so 768 x 768 (0.59 MP) stays under 1.5 GB; SOTS-size images run whole.
GLOBAL_STATS_TILE = 768
BASELINES = ("identity", "dcp")


def model_names():
    """Every model name the tools accept (besides file paths), in the order they are listed:
    the bundled networks, then the baselines."""
    return list(pretrained.available()) + list(BASELINES)


def model_names_text():
    """The one way model names are listed (help texts and errors)."""
    names = []
    for name in pretrained.available():
        alias = [a for a, target in pretrained.ALIASES.items() if target == name and a != "default"]
        also = f"also {', '.join(repr(a) for a in alias)}" if alias else ""
        if name == pretrained.DEFAULT:
            names.append(f"{name} (default{', ' + also if also else ''})")
        else:
            names.append(name + (f" ({also})" if also else ""))
    return ", ".join(names + list(BASELINES))


def resolve_name(spec):
    """A bundled name or alias -> the bundled name; anything else unchanged."""
    return pretrained.resolve(spec)


def as_unit_float(image):
    """float32 RGB in [0, 1] from a float image or uint8/uint16 pixels (/ 255, / 65535)."""
    image = np.asarray(image)
    scale = tiling.INTEGER_SCALES.get(image.dtype)
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
    if dtype not in tiling.INTEGER_SCALES:
        raise ValueError(f"dtype must be float32, uint8 or uint16, got {dtype}")
    return np.round(np.clip(image, 0.0, 1.0).astype(np.float32) * tiling.INTEGER_SCALES[dtype]).astype(dtype)


class ModelLoadError(ValueError):
    pass


class IdentityDehazer:
    """The hazy input itself: the floor every dehazer must beat in a results table."""

    name = "identity"
    needs_tensorflow = False

    def __call__(self, image, dtype=np.float32, progress=None):
        image = np.asarray(image)
        dtype = np.dtype(dtype)
        if image.dtype == dtype and dtype != np.float32:
            out = np.array(image)  # the same pixels
        else:  # in bands of rows: no full-size float temporaries for huge photos
            out = np.empty(image.shape, dtype)
            for r0 in range(0, image.shape[0], 256):
                out[r0:r0 + 256] = to_dtype(as_unit_float(image[r0:r0 + 256]), dtype)
        if progress is not None:
            progress(1, 1)
        return out


class DCPDehazer:
    """He et al.'s dark channel prior with guided-filter refinement (keras_dehaze.physics.dcp).

    Images up to ``strip_pixels`` run whole (``dehaze_dcp``); larger ones in horizontal strips
    with overlapping margins and the airlight of a downscaled copy of the whole image
    (``dehaze_dcp_strips``): memory is bounded by the strip size plus the output, not the photo
    (an 8000x6000 photo needed 6 GB whole)."""

    name = "dcp"
    needs_tensorflow = False

    def __init__(self, strip_pixels=4_000_000):
        self.strip_pixels = int(strip_pixels)

    def __call__(self, image, dtype=np.float32, progress=None):
        from keras_dehaze.physics.dcp import dehaze_dcp, dehaze_dcp_strips

        image = np.asarray(image)
        if image.shape[0] * image.shape[1] > self.strip_pixels:
            return dehaze_dcp_strips(image, strip_pixels=self.strip_pixels, out_dtype=dtype, progress=progress)
        out = dehaze_dcp(as_unit_float(image))[0].astype(np.float32)
        if progress is not None:
            progress(1, 1)
        return out if np.dtype(dtype) == np.float32 else to_dtype(out, dtype)


class KerasDehazer:
    """A Keras network (single- or multi-output: the full-resolution output is used)."""

    needs_tensorflow = True

    def __init__(self, model, name=None, tile=DEFAULT_TILE, overlap=32, multiple=4):
        from keras_dehaze.quiet import import_tensorflow

        tf, _ = import_tensorflow()

        self.model, self.name = model, name or model.name
        self.tile, self.overlap, self.multiple = tile, overlap, multiple
        # Tiles change what such a network computes: GuidedDehazer runs it whole at its working
        # resolution (AE-CR-Net keeps its tiles there: 0.65 GB less for a whole 0.18 MP run).
        self.image_wide_statistics = has_image_wide_statistics(model)
        self._fn = tf.function(
            lambda x: self._first(model(x, training=False)),
            input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)],
        )

    @staticmethod
    def _first(outputs):
        return outputs[0] if isinstance(outputs, (list, tuple)) else outputs

    def _run(self, batch):
        return self._fn(batch).numpy()

    def tiles(self, shape):
        """Number of network runs for an image of ``shape`` (H, W, ...)."""
        h, w = shape[:2]
        if h <= self.tile and w <= self.tile:
            return 1
        return tiling.count_tiles((h, w), self.tile, self.overlap, self.multiple)

    def __call__(self, image, dtype=np.float32, progress=None):
        """``image``: RGB float in [0, 1] or uint8/uint16; returns float32 in [0, 1] or, with
        ``dtype=np.uint8``/``np.uint16``, pixels (written row band by row band for tiled images:
        no full-size float array). ``progress(done, total)`` after each tile."""
        image = np.asarray(image)
        h, w = image.shape[:2]
        if h <= self.tile and w <= self.tile:
            out = to_dtype(self._run(as_unit_float(image)[None])[0], dtype)
            if progress is not None:
                progress(1, 1)
            return out
        if np.dtype(dtype) != np.float32:
            return tiling.dehaze_tiled(image, self._run, self.tile, self.overlap, self.multiple, out_dtype=dtype,
                                       progress=progress)
        out = tiling.dehaze_tiled(image, self._run, self.tile, self.overlap, self.multiple, progress=progress)
        return np.clip(out, 0.0, 1.0, out=out)


def check_keras_archive(path):
    """Raises ModelLoadError unless ``path`` looks like a complete .keras archive (a zip file):
    a truncated or corrupt file is named as such instead of with HDF5's or zipfile's words."""
    if not os.path.exists(path):
        raise ModelLoadError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise ModelLoadError(f"{path} is a folder, not a .keras model file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):  # a legacy HDF5 model saved with a .keras name
        return
    if not zipfile.is_zipfile(path):
        what = "empty" if os.path.getsize(path) == 0 else (
            "truncated or corrupt" if head.startswith(b"PK") else "not a zip archive")
        raise ModelLoadError(
            f"{path} is not a loadable keras-dehaze model: not a valid Keras archive "
            f"(a .keras file is a zip archive; this file is {what}, e.g. an interrupted copy or save)")


def load_keras_model(path):
    """Loads a .keras file in safe mode (no lambda layers or arbitrary code), with clear errors."""
    check_keras_archive(path)
    from keras_dehaze.quiet import import_tensorflow

    _, keras = import_tensorflow()
    from keras_dehaze import layers  # noqa: F401  (registers the custom layers)

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001  (h5py/zip/deserialisation errors vary)
        raise ModelLoadError(f"{path} is not a loadable keras-dehaze model: {type(e).__name__}: {e}") from None


PRECISIONS = ("int8", "float")


def int8_file(name):
    """Path of the int8 ``.tflite`` a preset ships (its record's ``int8_tflite``), else None."""
    record = pretrained.metadata(name)
    if not record.get("int8_tflite"):
        return None
    return os.path.join(pretrained.WEIGHTS_DIR, record["int8_tflite"])


def _load_tflite(path, threads=None, accelerator="cpu"):
    """A ``TFLiteDehazer``, its contract (an image in, the same size out) checked now, not per image."""
    from keras_dehaze.quiet import filtered_stderr

    if not os.path.exists(path):
        raise ModelLoadError(f"model file not found: {path}")
    try:
        with filtered_stderr():  # the runtime's "INFO: Created TensorFlow Lite XNNPACK delegate"
            dehazer = TFLiteDehazer(path, threads=threads, accelerator=accelerator)
            dehazer.check_output_size()
        return dehazer
    except (ImportError, OSError, ValueError, RuntimeError) as e:
        message = str(e)
        raise ModelLoadError(message if path in message else f"{path}: {message}") from None


def load_dehazer(spec=None, threads=None, tile=None, precision="float", accelerator="cpu"):
    """``spec``: None (the default preset), a bundled name or alias, "dcp", "identity",
    a path to a ``.keras`` or ``.tflite`` file.

    ``precision`` applies to presets: "float" (the Keras network, TensorFlow, tiles of ``tile``),
    "int8" (the int8 ``.tflite`` the preset ships, run by LiteRT without TensorFlow; an error if
    it ships none) or "auto" (int8 if shipped, else float). ``accelerator`` ("cpu"/"gpu") is
    for ``.tflite`` models (``keras_dehaze.edge.tflite_dehazer.TFLiteDehazer``)."""
    spec = spec or pretrained.DEFAULT
    if precision not in PRECISIONS + ("auto",):
        raise ModelLoadError(f"precision must be one of {PRECISIONS + ('auto',)}, got {precision!r}")
    if accelerator not in ACCELERATORS:
        raise ModelLoadError(f"accelerator must be one of {ACCELERATORS}, got {accelerator!r}")
    if accelerator != "cpu" and (spec in BASELINES or spec.endswith(".keras") or
                                 (not spec.endswith(".tflite") and precision == "float")):
        raise ModelLoadError(f"--accelerator {accelerator} runs .tflite models (a preset's int8 "
                             f"file or a .tflite path), not {spec!r} at {precision} precision")
    if spec == "identity":
        return IdentityDehazer()
    if spec == "dcp":
        return DCPDehazer()
    if spec.endswith(".keras"):
        model = load_keras_model(spec)
        return KerasDehazer(model, name=os.path.basename(spec), tile=tile or default_tile(model))
    if spec.endswith(".tflite"):
        return _load_tflite(spec, threads=threads, accelerator=accelerator)
    name = resolve_name(spec)
    if name not in pretrained.available():
        raise ModelLoadError(
            f"unknown model {spec!r}: give one of {model_names_text()}, or a path to a .keras or .tflite file"
        )
    if precision != "float":
        path = int8_file(name)
        if path is not None:
            dehazer = _load_tflite(path, threads=threads, accelerator=accelerator)
            dehazer.display_name = f"{name} (int8)"
            return dehazer
        if precision == "int8":
            raise ModelLoadError(f"the preset {name!r} ships no int8 .tflite file; use --precision float "
                                 f"(or convert one: docs/deployment.md)")
        if accelerator != "cpu":
            raise ModelLoadError(f"--accelerator {accelerator} needs an int8 .tflite file; the preset "
                                 f"{name!r} ships none")
    from keras_dehaze.quiet import import_tensorflow

    import_tensorflow()
    model = pretrained.load_pretrained(name)
    return KerasDehazer(model, name=name, tile=tile or default_tile(model))


def has_image_wide_statistics(model):
    """True for networks that normalise over the whole image (LKD-Net's ImageLayerNorm)."""
    return any(type(layer).__name__ == "ImageLayerNorm" for layer in model.layers)


def default_tile(model):
    """Tile side for a Keras network: larger for networks with image-wide statistics."""
    return GLOBAL_STATS_TILE if has_image_wide_statistics(model) else DEFAULT_TILE
