"""Replay a float32 ``.tflite`` graph with TensorFlow ops, so that gradients flow through it.

LiteRT runs a TFLite model outside the TF graph (no gradient). `TFLiteGraph` reads the file
with the TF-free reader (`keras_dehaze.edge.flatbuffer`), turns its weights into frozen TF
constants and runs its operators, in the file's order, as the equivalent TF ops. It is meant
for small convolutional networks such as PyDNet++ (`keras_dehaze.depth.pydnet`), not as a
general converter: only the ops below are known, anything else is refused up front.

Ops: CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, ADD, SUB, MUL, MAXIMUM, LEAKY_RELU (the
converter's form of Keras LeakyReLU), CONCATENATION, STRIDED_SLICE, RESIZE_BILINEAR, RESHAPE
(batch kept), with fused NONE / RELU / RELU6 / RELU_N1_TO_1.

Tensors: activations must be float32 and not quantized. Constant weights may be int8 with a
scale (weight-only "dynamic-range" quantization, as in the PyDNet++ file): they are
dequantized once, ``scale * (q - zero_point)``. LiteRT's hybrid kernels also round the input
ACTIVATIONS of those ops to int8 on the fly (XNNPACK and LiteRT's builtin kernels each in their
own way), which this replay does not: outputs of such a file differ from LiteRT's by that
rounding (see `keras_dehaze.depth.pydnet` for how much); float32 files match to float rounding.

Batch: the file is built for batch 1; dimension 0 is treated as the batch, so shape
constants (TRANSPOSE_CONV output shape, RESHAPE) take the batch of the input, and an op that
mixes examples (concatenation along axis 0, a slice of the batch axis) is refused.

Example:
    >>> graph = TFLiteGraph("pydnet_plus_plus.tflite")       # doctest: +SKIP
    >>> outputs = graph(images)  # [B, 448, 640, 3] -> list of [B, 448, 640, 1], differentiable
"""

import numpy as np

from keras_dehaze.backend import tf
from keras_dehaze.edge.flatbuffer import load_model_info

PADDINGS = {0: "SAME", 1: "VALID"}  # tflite Padding enum
ACTIVATIONS = {
    0: lambda x: x,  # NONE
    1: tf.nn.relu,  # RELU
    2: lambda x: tf.clip_by_value(x, -1.0, 1.0),  # RELU_N1_TO_1
    3: tf.nn.relu6,  # RELU6
}
ACTIVATION_NAMES = {4: "TANH", 5: "SIGN_BIT"}


class TFLiteGraphError(ValueError):
    """The file is not a TFLite model, or uses ops or tensor types the replay does not support."""


# ------------------------------------------------------------------ op implementations
# Each takes (op, inputs, batch): inputs are TF tensors (None for an omitted optional input),
# batch the scalar batch size of the call; returns the op's single output.

def _activation(op, x):
    return ACTIVATIONS[op.options.get("fused_activation_function", 0)](x)


def _strides(op):
    return [1, op.options.get("stride_h", 1), op.options.get("stride_w", 1), 1]


def _dilations(op):
    return [1, op.options.get("dilation_h_factor", 1), op.options.get("dilation_w_factor", 1), 1]


def _conv_2d(op, inputs, batch):
    x, w, b = (inputs + [None])[:3]
    # TFLite filter [out, h, w, in] -> TF [h, w, in, out]
    y = tf.nn.conv2d(x, tf.transpose(w, [1, 2, 3, 0]), _strides(op), PADDINGS[op.options["padding"]],
                     dilations=_dilations(op))
    return _activation(op, y if b is None else y + b)


def _depthwise_conv_2d(op, inputs, batch):
    x, w, b = (inputs + [None])[:3]
    channels = x.shape[-1]
    # TFLite filter [1, h, w, in * mult] (output channel c * mult + m) -> TF [h, w, in, mult]
    w = tf.reshape(w, [w.shape[1], w.shape[2], channels, w.shape[3] // channels])
    y = tf.nn.depthwise_conv2d(x, w, _strides(op), PADDINGS[op.options["padding"]],
                               dilations=_dilations(op)[1:3])
    return _activation(op, y if b is None else y + b)


def _transpose_conv(op, inputs, batch):
    shape, w, x, b = (inputs + [None])[:4]
    out_shape = tf.concat([[batch], tf.cast(shape[1:], tf.int32)], 0)
    # TFLite weights [out, h, w, in] -> TF conv2d_transpose filter [h, w, out, in]
    y = tf.nn.conv2d_transpose(x, tf.transpose(w, [1, 2, 0, 3]), out_shape, _strides(op),
                               PADDINGS[op.options["padding"]])
    return _activation(op, y if b is None else y + b)


def _binary(fn):
    return lambda op, inputs, batch: _activation(op, fn(inputs[0], inputs[1]))


def _concatenation(op, inputs, batch):
    return _activation(op, tf.concat(inputs, op.options["axis"]))


def _strided_slice(op, inputs, batch):
    x, begin, end, strides = inputs
    o = op.options
    if o.get("offset"):
        end = begin + end
    # the batch axis is always taken whole (checked at load: it is a no-op slice of batch 1)
    return tf.strided_slice(x, begin, end, strides, begin_mask=o.get("begin_mask", 0) | 1,
                            end_mask=o.get("end_mask", 0) | 1, shrink_axis_mask=o.get("shrink_axis_mask", 0))


def _reshape(op, inputs, batch):
    # the file's output shape, batch generalised (checked at load: the batch axis stays first)
    return tf.reshape(inputs[0], tf.concat([[batch], op.outputs[0].shape[1:]], 0))


def _resize_bilinear(op, inputs, batch):
    # TFLite's kernel mirrors TF's ResizeBilinear, flags included
    return tf.raw_ops.ResizeBilinear(images=inputs[0], size=inputs[1],
                                     align_corners=bool(op.options.get("align_corners")),
                                     half_pixel_centers=bool(op.options.get("half_pixel_centers")))


OPS = {
    "CONV_2D": _conv_2d,
    "DEPTHWISE_CONV_2D": _depthwise_conv_2d,
    "TRANSPOSE_CONV": _transpose_conv,
    "ADD": _binary(tf.add),
    "SUB": _binary(tf.subtract),
    "MUL": _binary(tf.multiply),
    "MAXIMUM": _binary(tf.maximum),
    "LEAKY_RELU": lambda op, inputs, batch: tf.nn.leaky_relu(inputs[0], op.options["alpha"]),
    "CONCATENATION": _concatenation,
    "STRIDED_SLICE": _strided_slice,
    "RESIZE_BILINEAR": _resize_bilinear,
    "RESHAPE": _reshape,
}


# ------------------------------------------------------------------ checks at load
def _op_problem(op):
    """Why `op` cannot be replayed (a short label), or None."""
    if op.name not in OPS:
        return op.name
    act = op.options.get("fused_activation_function", 0)
    if act not in ACTIVATIONS:
        return f"{op.name} with fused {ACTIVATION_NAMES.get(act, act)}"
    if op.options.get("padding", 0) not in PADDINGS:
        return f"{op.name} with padding {op.options['padding']}"
    if op.name == "CONV_2D" and op.inputs[0].shape[-1] != op.inputs[1].shape[-1]:
        return "CONV_2D grouped"
    if op.name == "CONCATENATION" and op.options["axis"] % op.outputs[0].rank == 0:
        return "CONCATENATION along the batch axis"
    if op.name == "STRIDED_SLICE" and not _keeps_batch(op):
        return "STRIDED_SLICE of the batch axis, with ellipsis/new-axis masks or runtime bounds"
    if op.name == "RESHAPE" and not (op.inputs[0].shape[:1] == op.outputs[0].shape[:1] == (1,)):
        return "RESHAPE across the batch axis"
    return None


def _keeps_batch(op):
    """A STRIDED_SLICE without ellipsis/new axes that takes all of axis 0 (size 1 in the file)."""
    o = op.options
    if o.get("ellipsis_mask") or o.get("new_axis_mask") or o.get("shrink_axis_mask", 0) & 1:
        return False
    begin, end, strides = (t.const_value for t in op.inputs[1:4])
    if begin is None or end is None or strides is None:
        return False
    start = None if o.get("begin_mask", 0) & 1 else int(begin[0])
    stop = None if o.get("end_mask", 0) & 1 else int(begin[0] + end[0] if o.get("offset") else end[0])
    return range(1)[start:stop:int(strides[0])] == range(1)


def _tensor_problem(t):
    """Why tensor `t` cannot be replayed, or None. Constants: float32, int32 (shapes, indices) or
    int8/uint8 weights with a scale; everything computed at run time: plain float32."""
    if t.is_constant:
        if t.const_value is None:
            return f"constant {t.name!r} has no readable data"
        if (t.dtype == "float32" and not t.quantized) or t.dtype == "int32":
            return None
        if t.dtype in ("int8", "uint8") and t.quant_scale is not None:
            return None
        return f"constant {t.name!r} is {'quantized ' if t.quantized else ''}{t.dtype}"
    if t.dtype != "float32" or t.quantized:
        return f"tensor {t.name!r} is {'quantized ' if t.quantized else ''}{t.dtype} (want float32)"
    return None


def _constant(t):
    """The value of a constant tensor as a TF constant (int8 weights dequantized to float32)."""
    value = t.const_value
    if t.dtype in ("int8", "uint8"):
        shape = [1] * value.ndim
        shape[t.quant_dimension] = -1
        scale = t.quant_scale.reshape(shape if t.quant_scale.size > 1 else [])
        zero = (t.quant_zero_point if t.quant_zero_point is not None else np.zeros(1)).reshape(scale.shape)
        value = scale * (value.astype(np.float32) - zero.astype(np.float32))
    return tf.constant(value)


def _load(path_or_bytes):
    name = "<bytes>" if isinstance(path_or_bytes, (bytes, bytearray, memoryview)) else str(path_or_bytes)
    try:
        return load_model_info(path_or_bytes, max_const_elements=None)
    except Exception as err:  # OSError, not 'TFL3', or a corrupt flatbuffer inside the generated reader
        raise TFLiteGraphError(f"could not read {name!r} as a TFLite model ({type(err).__name__}: {err})") from err


class TFLiteGraph:
    """A float32 TFLite model replayed with TF ops: ``graph(images) -> [outputs]``, differentiable.

    Args:
        path_or_bytes: the ``.tflite`` file (path, or its bytes).

    Attributes:
        input_shape: the file's input shape (batch 1); calls take any batch of this H, W, C.
        output_names: the names of the outputs, in the order `__call__` returns them.

    Raises:
        TFLiteGraphError: not a TFLite file, more than one subgraph or input, or unsupported
            ops or tensor types (the message lists every one).
    """

    def __init__(self, path_or_bytes):
        info = _load(path_or_bytes)
        problems = []
        if len(info.subgraphs) != 1:
            problems.append(f"{len(info.subgraphs)} subgraphs (control flow)")
        if len(info.inputs) != 1:
            problems.append(f"{len(info.inputs)} inputs")
        ops = info.ops
        problems += sorted({p for p in map(_op_problem, ops) if p})
        tensors = {t.index: t for op in ops for t in op.present_inputs + op.outputs}
        problems += [p for p in map(_tensor_problem, tensors.values()) if p]
        if problems:
            raise TFLiteGraphError(f"{info.path or '<bytes>'}: cannot replay this TFLite model in TF: "
                                   f"unsupported: {'; '.join(problems)}")
        self.path = info.path
        self.input_shape = info.inputs[0].shape
        self.output_names = [t.name for t in info.outputs]
        self._input = info.inputs[0].index
        self._outputs = [t.index for t in info.outputs]
        self._ops = ops
        self._constants = {i: _constant(t) for i, t in tensors.items() if t.is_constant}

    def __call__(self, images):
        """Outputs (float32 tensors, batch of `images`) for `images` [B, *input_shape[1:]]."""
        images = tf.convert_to_tensor(images, tf.float32)
        if tuple(images.shape[1:]) != tuple(self.input_shape[1:]):
            raise ValueError(f"{self.path or 'TFLite graph'} takes [B, {', '.join(map(str, self.input_shape[1:]))}] "
                             f"inputs, got shape {tuple(images.shape)}")
        values = dict(self._constants)
        values[self._input] = images
        batch = tf.shape(images)[0]
        for op in self._ops:
            inputs = [None if t is None else values[t.index] for t in op.inputs]
            values[op.outputs[0].index] = OPS[op.name](op, inputs, batch)
        return [values[i] for i in self._outputs]


__all__ = ["OPS", "TFLiteGraph", "TFLiteGraphError"]
