"""Run a ``.tflite`` model with LiteRT on float images, and compare outputs (no TensorFlow).

``TFLiteRunner`` takes and returns float32 images in [0, 1] whatever the model's I/O type:
for int8/uint8 I/O it quantizes the input and dequantizes the output with the scale and
zero point stored in the tensor details. Kept small on purpose (the on-device runner may
reuse it).

Usage::

    run = TFLiteRunner("model_int8.tflite", num_threads=2)
    out = run(image)                       # image: [H, W, 3] or [1, H, W, 3] float32
    psnr_between(keras_out, out)           # dB, data range 1
"""

import numpy as np

try:  # the project's interpreter (ai-edge-litert); tf.lite.Interpreter is the same API
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except ImportError:  # pragma: no cover - only on machines without ai-edge-litert
    Interpreter = OpResolverType = None


def quantize(x, detail):
    """float -> the tensor's integer type with its (scale, zero_point)."""
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    q = np.round(np.asarray(x, np.float32) / scale + zero)
    return np.clip(q, info.min, info.max).astype(detail["dtype"])


def dequantize(q, detail):
    """The tensor's integer values -> float32."""
    scale, zero = detail["quantization"]
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)


class TFLiteRunner:
    """One interpreter for a single-input, single-output image model.

    The default CPU path applies the XNNPACK delegate. If XNNPACK refuses the model (it fails
    at ``allocate_tensors``, e.g. on an int8 scale outside its limits) the runner falls back to
    the builtin kernels and records why in ``xnnpack_error``: on a device with the default
    settings that model would fail to load, so callers should report it.

    Args:
        model: path to a ``.tflite`` file or its bytes.
        num_threads: CPU threads for the interpreter.
        xnnpack: use the default delegates (XNNPACK); False runs the builtin kernels only.
    """

    def __init__(self, model, num_threads=None, xnnpack=True):
        if Interpreter is None:
            raise ImportError("ai-edge-litert is not installed: pip install ai-edge-litert")
        kind = "model_content" if isinstance(model, (bytes, bytearray)) else "model_path"
        self.xnnpack_error = None
        if xnnpack:
            try:
                self.interpreter = Interpreter(**{kind: model}, num_threads=num_threads)
                self.interpreter.allocate_tensors()
            except RuntimeError as exc:
                self.xnnpack_error = str(exc)
                xnnpack = False
        if not xnnpack:
            builtin_only = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            self.interpreter = Interpreter(**{kind: model}, num_threads=num_threads,
                                           experimental_op_resolver_type=builtin_only)
            self.interpreter.allocate_tensors()
        self.uses_xnnpack = xnnpack
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_shape(self):
        return tuple(int(d) for d in self.input["shape"])

    def __call__(self, image):
        """float32 image(s) [H, W, C] or [1, H, W, C] in [0, 1] -> float32 output, same rank."""
        image = np.asarray(image, np.float32)
        batched = image.ndim == 4
        x = image if batched else image[None]
        if tuple(x.shape) != self.input_shape:
            raise ValueError(f"input {x.shape} does not match the model's fixed input {self.input_shape}")
        if np.issubdtype(self.input["dtype"], np.integer):
            x = quantize(x, self.input)
        self.interpreter.set_tensor(self.input["index"], x.astype(self.input["dtype"], copy=False))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if np.issubdtype(self.output["dtype"], np.integer):
            y = dequantize(y, self.output)
        y = y.astype(np.float32, copy=False)
        return y if batched else y[0]


def psnr_between(a, b, data_range=1.0):
    """PSNR (dB) of b against a over the whole arrays; inf when identical."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range**2 / mse)


def summarize(values):
    """{mean, min, max, n} of finite-or-inf numbers (mean over finite values, inf if all inf)."""
    values = [float(v) for v in values]
    if not values:
        return {"n": 0}
    finite = [v for v in values if np.isfinite(v)]
    mean = float(np.mean(finite)) if finite else float("inf")
    return {"mean": mean, "min": min(values), "max": max(values), "n": len(values)}


__all__ = ["TFLiteRunner", "dequantize", "psnr_between", "quantize", "summarize"]
