"""User-supplied frozen networks loaded offline from a file: SavedModel dir, ``.keras``, ``.tflite``.

Used for the pluggable depth estimator and semantic encoder of the Rehazy trainer (e.g. an
exported Depth Anything V2 or a CLIP image encoder). Nothing is downloaded: the user gives a path.

- SavedModel directory: ``tf.saved_model.load``; the ``serving_default`` signature when there is
  one, else the object itself must be callable. Differentiable (gradients flow through it).
- ``.keras`` / ``.h5``: ``tf_keras.models.load_model(compile=False)``, frozen. Differentiable.
  (A Keras 3 ``.keras`` file cannot be read by tf_keras; export a SavedModel instead.)
- ``.tflite``: run by the LiteRT interpreter (``keras_dehaze.edge.interpreter.TFLiteModel``, the
  project's one TFLite wrapper: int8/uint8 models are quantized and dequantized there) through
  ``tf.numpy_function`` one image at a time. NOT differentiable (the gradient is treated as zero),
  so it can produce targets and rehazy depth but cannot drive a loss on the network output.

Inputs are RGB [B, H, W, 3] in [0, 1]; `FrozenModelFile` optionally resizes them to the model's
input size (taken from the model when it is static), applies ``(x - mean) / std`` and transposes
to NCHW for models converted from PyTorch without layout change.

Example:
    >>> model = FrozenModelFile("depth_anything_v2_small.keras", input_size=(518, 518),
    ...                         mean=IMAGENET_MEAN, std=IMAGENET_STD)  # doctest: +SKIP
    >>> y = model(images)  # first output, float32
"""

import os

import numpy as np

from keras_dehaze.backend import keras, tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # Depth Anything / most torchvision models
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ModelFileError(ValueError):
    """A model file is missing or cannot be loaded/run."""


def model_kind(path):
    """'savedmodel', 'keras' or 'tflite' from the path; raises ModelFileError otherwise."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ModelFileError(f"{path} is a directory without saved_model.pb (not a SavedModel).")
        return "savedmodel"
    if not os.path.isfile(path):
        raise ModelFileError(f"model file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".keras", ".h5"):
        return "keras"
    if ext == ".tflite":
        return "tflite"
    raise ModelFileError(f"{path}: unsupported model file (use a SavedModel directory, .keras, .h5 "
                         f"or .tflite).")


def _first(outputs):
    """The first output of a model returning a tensor, a list or a dict (sorted keys)."""
    if isinstance(outputs, dict):
        return outputs[sorted(outputs)[0]]
    if isinstance(outputs, (list, tuple)):
        return outputs[0]
    return outputs


class FrozenModelFile:
    """A frozen network from a file, called on [B, H, W, 3] images in [0, 1].

    Args:
        path: SavedModel directory, ``.keras``/``.h5`` or ``.tflite`` file.
        input_size: (height, width) the model takes; None uses the model's static input size
            when it has one, else feeds the images at their own size.
        mean, std: per-channel normalisation ``(x - mean) / std`` after resizing; None: none.
        channels_first: feed NCHW (models converted from PyTorch without layout change).
        name: label for logs.

    Attributes:
        kind: "savedmodel", "keras" or "tflite".
        differentiable: False only for "tflite".
    """

    def __init__(self, path, input_size=None, mean=None, std=None, channels_first=False, name=None):
        self.path = os.fspath(path)
        self.kind = model_kind(self.path)
        self.differentiable = self.kind != "tflite"
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)
        self.channels_first = bool(channels_first)
        self.name = name or os.path.basename(self.path.rstrip("/"))
        self._batch_one = False
        model_hw = None
        try:
            if self.kind == "keras":
                self._model = keras.models.load_model(self.path, compile=False)
                self._model.trainable = False
                shape = self._model.inputs[0].shape
                self._batch_one = shape[0] == 1
                model_hw = tuple(shape[2:4]) if self.channels_first else tuple(shape[1:3])
                self._fn = self._call_keras
            elif self.kind == "savedmodel":
                self._model = tf.saved_model.load(self.path)
                fn = getattr(self._model, "signatures", {}).get("serving_default")
                if fn is not None:
                    args, kwargs = fn.structured_input_signature
                    specs = list(kwargs.values()) or list(args)
                    if len(specs) != 1:
                        raise ModelFileError(f"{self.path}: serving_default takes {len(specs)} inputs; "
                                             f"need exactly one image input.")
                    self._signature, self._input_key = fn, (next(iter(kwargs)) if kwargs else None)
                    shape = specs[0].shape
                    self._batch_one = shape[0] == 1
                    model_hw = tuple(shape[2:4]) if self.channels_first else tuple(shape[1:3])
                    self._fn = self._call_signature
                elif callable(self._model):
                    self._fn = self._call_object
                else:
                    raise ModelFileError(f"{self.path}: SavedModel has no serving_default signature "
                                         f"and is not callable.")
            else:
                self._init_tflite()
                model_hw = self._tflite_hw
                self._batch_one = True
        except ModelFileError:
            raise
        except Exception as err:  # unreadable file, missing custom objects, Keras 3 format...
            raise ModelFileError(f"could not load {self.kind} model {self.path}: "
                                 f"{type(err).__name__}: {err}") from err
        if input_size:
            self.input_size = (int(input_size[0]), int(input_size[1]))
        elif model_hw and all(isinstance(v, int) and v > 0 for v in model_hw):
            self.input_size = (int(model_hw[0]), int(model_hw[1]))
        else:
            self.input_size = None

    def _call_keras(self, x):
        return _first(self._model(x, training=False))

    def _call_signature(self, x):
        if self._input_key is None:
            return _first(self._signature(x))
        return _first(self._signature(**{self._input_key: x}))

    def _call_object(self, x):
        return _first(self._model(x))

    # ------------------------------------------------------------------ TFLite
    def _init_tflite(self):
        from keras_dehaze.edge.interpreter import TFLiteModel

        self._tflite = TFLiteModel(self.path, output=0)  # the first output, as for the other kinds
        shape = self._tflite.input_shape
        self._tflite_hw = (int(shape[2]), int(shape[3])) if self.channels_first else (int(shape[1]), int(shape[2]))

    def _run_tflite(self, x):
        """One image [1, ...] float32 numpy -> first output float32 numpy."""
        if tuple(x.shape) != self._tflite.input_shape:
            self._tflite.resize(x.shape)
        return self._tflite.run(x).astype(np.float32, copy=False)

    def _run_tflite_one(self, image):
        return self._run_tflite(image[None])[0]

    def _tflite_fn(self, x):
        out_shape = [int(v) for v in self._tflite.output_shape[1:]]  # static: the input size is fixed

        def per_image(image):
            y = tf.numpy_function(self._run_tflite_one, [image], tf.float32)
            y.set_shape(out_shape)
            return y

        return tf.stop_gradient(tf.map_fn(per_image, x, fn_output_signature=tf.TensorSpec(out_shape, tf.float32)))

    # ------------------------------------------------------------------ calling
    def preprocess(self, images):
        x = tf.convert_to_tensor(images, tf.float32)
        if self.input_size is not None:
            x = tf.image.resize(x, self.input_size, method="bilinear", antialias=True)
        if self.mean is not None:
            x = x - tf.constant(self.mean, tf.float32)
        if self.std is not None:
            x = x / tf.constant(self.std, tf.float32)
        if self.channels_first:
            x = tf.transpose(x, [0, 3, 1, 2])
        return x

    def _one_image(self, image):
        return self._fn(image[None])[0]

    def __call__(self, images):
        """First output of the model on the preprocessed images, float32."""
        x = self.preprocess(images)
        if self.kind == "tflite":
            y = self._tflite_fn(x)
        elif self._batch_one:  # exported with a fixed batch of 1: one image at a time
            y = tf.map_fn(self._one_image, x, fn_output_signature=tf.float32)
        else:
            y = self._fn(x)
        return tf.cast(y, tf.float32)

    def describe(self):
        size = f"{self.input_size[0]}x{self.input_size[1]}" if self.input_size else "native size"
        norm = f", (x - {self.mean}) / {self.std}" if self.mean or self.std else ""
        grad = "differentiable" if self.differentiable else "NOT differentiable (TFLite)"
        return f"{self.kind} {self.path} at {size}{norm}; {grad}"


__all__ = ["CLIP_MEAN", "CLIP_STD", "FrozenModelFile", "IMAGENET_MEAN", "IMAGENET_STD", "ModelFileError",
           "model_kind"]
