"""One ``.tflite`` model run by the LiteRT interpreter: float32 arrays in, float32 out.

The project's single TFLite wrapper: the on-device dehazer (``keras_dehaze.edge.tflite_dehazer``),
the converter's Keras-vs-TFLite parity checks (``keras_dehaze.edge.conversion``), the benchmark
and frozen networks used in training (``keras_dehaze.model_files``) all run ``.tflite`` files
through ``TFLiteModel``, and ``quantize`` / ``dequantize`` below are the one place where float
values meet a model's int8/uint8 tensors (the LiteRT GPU path uses them too).

Needs numpy and a TFLite interpreter only (``ai_edge_litert``, or the older ``tflite_runtime``):
no TensorFlow, so it runs on a device.

Usage::

    model = TFLiteModel("model_int8.tflite", threads=2)
    y = model(x)                      # x: float32 [1, H, W, 3] (or [H, W, 3]) -> float32, same rank
    model.resize((1, 512, 384, 3))    # run another size, if the graph allows it
    model.uses_xnnpack, model.xnnpack_error
"""

import os
import sys

import numpy as np

__all__ = ["TFLiteModel", "dequantize", "load_interpreter_class", "quantization_params", "quantize"]


def load_interpreter_class():
    """Returns ``(Interpreter class, backend name)``: ai_edge_litert, else tflite_runtime."""
    problems = []
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai_edge_litert"
    except ImportError as e:
        problems.append(f"ai_edge_litert: {e}")
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite_runtime"
    except ImportError as e:
        problems.append(f"tflite_runtime: {e}")
    raise ImportError("No TFLite interpreter is installed. Install one with "
                      "'pip install ai-edge-litert' (or the older 'tflite-runtime'). "
                      "Import errors: " + "; ".join(problems))


def _builtin_resolver(interpreter_class):
    """The "builtin kernels, no default delegates" op resolver of the interpreter's package."""
    try:
        module = sys.modules[interpreter_class.__module__]
        return module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    except (KeyError, AttributeError):
        return None


def quantization_params(detail):
    """``(scale, zero_point)`` of a tensor quantized per tensor; ``(0.0, 0)`` if not quantized.

    Raises ValueError for a per-channel quantized tensor (model inputs and outputs never are).
    """
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64).ravel()
    zps = np.asarray(params.get("zero_points", []), dtype=np.int64).ravel()
    if scales.size > 1:
        if not (np.all(scales == scales[0]) and np.all(zps == zps[0])):
            raise ValueError(f"tensor {detail.get('name')!r} is quantized per channel; "
                             f"only per-tensor quantized model inputs/outputs are supported")
    if scales.size >= 1:
        return float(scales[0]), int(zps[0]) if zps.size else 0
    scale, zp = detail.get("quantization", (0.0, 0))
    return float(scale), int(zp)


def quantize(x, dtype, params):
    """Float values -> a tensor of ``dtype``: ``clip(round(x / scale) + zero_point)`` for integer
    types (``params`` = ``(scale, zero_point)``), a cast for float types."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.asarray(x).astype(dtype, copy=False)
    scale, zero_point = params
    if not scale:
        raise ValueError(f"a {dtype} tensor without quantization parameters")
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / np.float32(scale)) + np.float32(zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, params):
    """A tensor's values -> float32: ``(q - zero_point) * scale`` for integer tensors."""
    q = np.asarray(q)
    if q.dtype.kind == "f":
        return q.astype(np.float32, copy=False)
    scale, zero_point = params
    if not scale:
        raise ValueError(f"a {q.dtype} tensor without quantization parameters")
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


class TFLiteModel:
    """A ``.tflite`` model with one input, run on float32 arrays whatever its tensor types.

    Int8/uint8 inputs are quantized and outputs dequantized with the scale and zero point stored
    in the model (``quantize`` / ``dequantize``).

    The default CPU path applies the interpreter's default delegate (XNNPACK). If XNNPACK refuses
    the model (it fails at ``allocate_tensors``, e.g. on an int8 scale outside its limits), the
    builtin kernels run it instead and ``xnnpack_error`` says why: on a device with default
    settings that model would not load, so callers should report it.

    Args:
        model: path to a ``.tflite`` file, or its bytes.
        threads: interpreter threads (None: the interpreter's default).
        xnnpack: use the default delegates (True); False runs the builtin kernels only.
        output: index of the output to return; None: the output whose shape is the input's
            (TFLite does not keep a Keras model's output order reliably), else the first.
        allocate: allocate the tensors now. False only describes the model (e.g. when LiteRT's
            GPU accelerator runs it); ``run`` then needs ``resize`` (or ``allocate_tensors``).

    Attributes:
        name: the path, or "<bytes>".
        backend: "ai_edge_litert" or "tflite_runtime".
        input / output: the interpreter's details of the input and the chosen output (for the
            current size).
        input_shape: the current input shape (a tuple); ``native_shape`` the stored one.
        dynamic: the stored input signature has a variable height or width (-1).
        input_dtype / output_dtype: numpy dtypes; ``input_quant`` / ``output_quant`` their
            ``(scale, zero_point)``.
        uses_xnnpack / xnnpack_error: whether the default delegates run the model, and why not.
    """

    def __init__(self, model, threads=None, xnnpack=True, output=None, allocate=True):
        if isinstance(model, (bytes, bytearray)):
            source, self.name = {"model_content": bytes(model)}, "<bytes>"
        else:
            self.name = os.fspath(model)
            if not os.path.isfile(self.name):
                raise FileNotFoundError(f"{self.name}: model file not found")
            source = {"model_path": self.name}
        interpreter_class, self.backend = load_interpreter_class()
        self.threads = threads
        self.xnnpack_error = None
        self.interpreter = None
        if xnnpack:
            try:
                self.interpreter = interpreter_class(**source, num_threads=threads)
                if allocate:
                    self.interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                self.interpreter = None
                self.xnnpack_error = str(e).strip()
        if self.interpreter is None:
            resolver = _builtin_resolver(interpreter_class)
            try:
                if resolver is None:
                    raise ValueError(self.xnnpack_error or "the interpreter has no builtin op resolver")
                self.interpreter = interpreter_class(**source, num_threads=threads,
                                                     experimental_op_resolver_type=resolver)
                if allocate:
                    self.interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                raise ValueError(f"{self.name}: cannot load the TFLite model "
                                 f"({self.xnnpack_error or str(e).strip()})") from e
        self.uses_xnnpack = self.xnnpack_error is None and bool(xnnpack)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ValueError(f"{self.name}: expected a model with one image input and an image "
                             f"output, got {len(inputs)} inputs and {len(outputs)} outputs")
        self.input = inputs[0]
        shape = [int(v) for v in self.input["shape"]]
        if output is None:
            same = [o for o in outputs if [int(v) for v in o["shape"]] == shape]
            self.output = same[0] if same else outputs[0]
        else:
            self.output = outputs[output]
        self.signature = tuple(int(v) for v in self.input.get("shape_signature", self.input["shape"]))
        self.dynamic = len(self.signature) >= 3 and (self.signature[1] < 0 or self.signature[2] < 0)
        self.input_shape = self.native_shape = tuple(shape)
        self.input_dtype = np.dtype(self.input["dtype"])
        self.output_dtype = np.dtype(self.output["dtype"])
        self.input_quant = quantization_params(self.input)
        self.output_quant = quantization_params(self.output)

    # -- sizes
    def resize(self, shape, strict=False):
        """Sets the input shape (``resize_tensor_input`` + ``allocate_tensors``) and refreshes
        ``input`` / ``output``. ``strict=True`` only allows the dimensions that are -1 in the
        signature to change. Raises the interpreter's ValueError/RuntimeError if the graph
        refuses the shape."""
        shape = tuple(int(v) for v in shape)
        self.interpreter.resize_tensor_input(self.input["index"], list(shape), strict=strict)
        self.interpreter.allocate_tensors()
        self.input_shape = shape
        self._refresh_details()

    def _refresh_details(self):
        index = self.output["index"]
        self.input = self.interpreter.get_input_details()[0]
        self.output = next(d for d in self.interpreter.get_output_details() if d["index"] == index)

    @property
    def output_shape(self):
        """The chosen output's shape at the current input size."""
        return tuple(int(v) for v in self.output["shape"])

    # -- values
    def quantize(self, x):
        """Float values -> this model's input tensor type."""
        return quantize(x, self.input_dtype, self.input_quant)

    def dequantize(self, y):
        """This model's output tensor values -> float32."""
        return dequantize(y, self.output_quant)

    def run(self, batch):
        """One interpreter call: a float array of the current ``input_shape`` -> float32 output."""
        batch = np.asarray(batch)
        if tuple(batch.shape) != self.input_shape:
            raise ValueError(f"{self.name}: input {tuple(batch.shape)} does not match the model's "
                             f"input {self.input_shape} (resize the model first)")
        self.interpreter.set_tensor(self.input["index"], self.quantize(batch))
        self.interpreter.invoke()
        return self.dequantize(self.interpreter.get_tensor(self.output["index"]))

    def __call__(self, x):
        """float32 ``x`` of the input shape, or without its batch axis -> float32, same rank."""
        x = np.asarray(x, np.float32)
        batched = x.ndim == len(self.input_shape)
        y = self.run(x if batched else x[None])
        return y if batched else y[0]

    def __repr__(self):
        return (f"TFLiteModel({self.name!r}, input={list(self.input_shape)} {self.input_dtype}, "
                f"output={self.output_dtype}, xnnpack={self.uses_xnnpack})")
