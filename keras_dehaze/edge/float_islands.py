"""Find the float islands of a full-integer (int8) ``.tflite`` graph (no TensorFlow needed).

An island is an operator that reads or writes a float tensor inside an int8 model: the
converter keeps ops without an int8 kernel in float and wraps them in DEQUANTIZE/QUANTIZE.
They cost speed, and on an int8-only accelerator (Edge TPU, NPU) they split the graph. The
model's own float I/O boundary (QUANTIZE of a float input, DEQUANTIZE to a float output, when
float I/O was chosen) is not an island.

Usage::

    for island in float_islands(load_model_info("model_int8.tflite")):
        print(island["op"], island["reason"])
"""

from collections import Counter

_FLOAT = ("float32", "float16", "float64")

# Why the converter leaves an op in float (keyed by op name).
_REASONS = {
    "FLOOR": "TFLite has no int8 FLOOR kernel: the converter keeps it in float32 between "
             "DEQUANTIZE and QUANTIZE/CAST (the DCN's floor(offset) of the sampling grid)",
    "CAST": "float32 -> int32 cast of floor(offset): the DCN sampling grid enters int32 index "
            "arithmetic (exact; int8 is never used for indices)",
    "DEQUANTIZE": "int8 -> float32 for a following float op",
    "QUANTIZE": "float32 -> int8 after a float op",
}
_DEFAULT_REASON = "no int8 kernel for this op; the converter kept it in float"


def _is_float(t):
    return t is not None and t.dtype in _FLOAT


def float_islands(info, float_io=False):
    """Ops of an int8 model touching float tensors, each with the op and a reason.

    Args:
        info: ``keras_dehaze.edge.flatbuffer.ModelInfo`` of the int8 model.
        float_io: the model was converted with float input/output; the boundary QUANTIZE of a
            model input and DEQUANTIZE producing a model output are then not islands.

    Returns:
        list of dicts: index, op, signature (``OpInfo.describe()``), float_inputs,
        float_outputs, reason.
    """
    inputs = {t.index for t in info.inputs}
    outputs = {t.index for t in info.outputs}
    islands = []
    for op in info.ops:
        f_in = [t for t in op.inputs if _is_float(t)]
        f_out = [t for t in op.outputs if _is_float(t)]
        if not (f_in or f_out):
            continue
        if float_io and op.name == "QUANTIZE" and all(t.index in inputs for t in f_in) and not f_out:
            continue
        if float_io and op.name == "DEQUANTIZE" and all(t.index in outputs for t in f_out) and not f_in:
            continue
        reason = _REASONS.get(op.name, _DEFAULT_REASON)
        if op.name == "CAST" and not any(t.dtype == "int32" for t in op.outputs):
            reason = _DEFAULT_REASON
        islands.append({
            "index": op.index,
            "op": op.name,
            "signature": op.describe(),
            "float_inputs": [t.name for t in f_in],
            "float_outputs": [t.name for t in f_out],
            "reason": reason,
        })
    return islands


def island_summary(islands):
    """{op name: count} of the islands, for reports."""
    return dict(sorted(Counter(i["op"] for i in islands).items()))


def integer_dtypes(info):
    """{dtype: number of non-constant tensors} of the main graph (int8 / int32 / float32 ...)."""
    return dict(sorted(Counter(t.dtype for t in info.main.tensors if not t.is_constant).items()))


__all__ = ["float_islands", "integer_dtypes", "island_summary"]
