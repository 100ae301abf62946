"""Read a ``.tflite`` flatbuffer WITHOUT TensorFlow.

Only ``numpy``, the ``flatbuffers`` package and a generated TFLite schema reader are
needed, so this runs on a Raspberry Pi that has ``ai-edge-litert`` but no TensorFlow.

Schema reader, in order of preference (first one found wins; see ``SCHEMA_SOURCE``):

1. ``ai_edge_litert/schema_py_generated.py`` (ships in the ai-edge-litert wheel, the
   project's interpreter; x86_64 and aarch64 wheels).
2. ``tflite_runtime/schema_py_generated.py`` (if an old tflite-runtime wheel has it).
3. ``tensorflow/lite/python/schema_py_generated.py``.

The file is loaded *by path* with ``importlib``: neither the ``ai_edge_litert``
package ``__init__`` (which dlopens ``libLiteRt.so``) nor ``tensorflow`` is imported.
The schema module itself only imports ``flatbuffers``.

Usage::

    info = load_model_info("model.tflite")
    info.op_histogram()        # Counter({'CONV_2D': 12, 'ADD': 5, ...})
    info.flex_ops()            # ops converted with SELECT_TF_OPS, e.g. FlexConv2D
    info.custom_ops()          # every CUSTOM op (Flex ops included)
    for op in info.ops:        # main-subgraph operators in execution order
        print(op.name, op.version, op.input_shapes, op.inputs_constant)
    info.inputs[0].shape_signature   # -1 marks a dynamic dimension
    load_model_info("model.tflite", max_const_elements=None)  # every constant's values (weights too)

Also a tiny CLI: ``python -m keras_dehaze.edge.flatbuffer model.tflite`` prints the model summary.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

__all__ = [
    "TensorInfo",
    "OpInfo",
    "SubgraphInfo",
    "ModelInfo",
    "load_model_info",
    "schema",
    "SCHEMA_SOURCE",
]

_SCHEMA_FILE = "schema_py_generated.py"
# By default only constants this small keep their values (axes, paddings, strides, shapes ...).
_MAX_CONST_VALUE_ELEMENTS = 64

_schema_module = None
SCHEMA_SOURCE: str | None = None


def _candidate_schema_files() -> Iterable[str]:
    for pkg, sub in (
        ("ai_edge_litert", ""),
        ("tflite_runtime", ""),
        ("tensorflow", os.path.join("lite", "python")),
    ):
        try:
            spec = importlib.util.find_spec(pkg)  # locates the package, does not import it
        except (ImportError, ValueError, AttributeError):
            # ValueError: sys.modules[pkg] is None (import deliberately blocked)
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            path = os.path.join(root, sub, _SCHEMA_FILE)
            if os.path.isfile(path):
                yield path


def schema():
    """Return the generated TFLite schema module (loaded once, by file path)."""
    global _schema_module, SCHEMA_SOURCE
    if _schema_module is not None:
        return _schema_module
    errors = []
    for path in _candidate_schema_files():
        name = "_keras_dehaze_tflite_schema"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # pragma: no cover - broken install
            errors.append(f"{path}: {exc!r}")
            continue
        if not hasattr(module, "ModelT"):
            errors.append(f"{path}: no object API (ModelT)")
            continue
        _schema_module, SCHEMA_SOURCE = module, path
        return module
    raise ImportError(
        "No TFLite flatbuffer schema reader found. Install `ai-edge-litert` (it ships "
        "ai_edge_litert/schema_py_generated.py) and `flatbuffers`. " + "; ".join(errors)
    )


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _to_str(x) -> str | None:
    if x is None:
        return None
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode("utf-8", "replace")
    return str(x)


def _snake(name: str) -> str:
    """camelCase field names of the generated object API -> snake_case."""
    s1 = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s1).lower()


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return _to_str(value)
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {_snake(k): _plain(v) for k, v in vars(value).items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# numpy dtypes for the TensorType enum names (lower-cased); unknown -> None
_NP_DTYPES = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
    "bool": np.bool_,
}


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # -1 = dynamic dimension (== shape when absent)
    dtype: str  # TensorType name, lower case: "float32", "int32", "int8", ...
    buffer: int
    is_constant: bool  # has a non-empty buffer (the runtime maps it read-only)
    quantized: bool  # quantization parameters (scale) present
    is_variable: bool = False
    const_value: np.ndarray | None = field(default=None, compare=False, repr=False)
    # real = scale * (q - zero_point), per channel along quant_dimension when len(scale) > 1
    quant_scale: np.ndarray | None = field(default=None, compare=False, repr=False)
    quant_zero_point: np.ndarray | None = field(default=None, compare=False, repr=False)
    quant_dimension: int = 0

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)

    @property
    def num_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class OpInfo:
    subgraph: int
    index: int  # position in the subgraph's operator list (= execution order)
    name: str  # builtin name ("CONV_2D") or the custom code ("FlexConv2D")
    builtin_code: int
    version: int
    custom_code: str | None
    inputs: tuple[TensorInfo | None, ...]  # None = optional input left out (-1)
    outputs: tuple[TensorInfo, ...]
    options_type: str | None = None  # e.g. "Conv2DOptions"
    options: dict[str, Any] = field(default_factory=dict, compare=False)  # snake_case keys

    @property
    def is_custom(self) -> bool:
        return self.custom_code is not None

    @property
    def is_flex(self) -> bool:
        """Select-TF op (converted with SELECT_TF_OPS): CUSTOM op named 'Flex...'."""
        return self.custom_code is not None and self.custom_code.startswith("Flex")

    @property
    def present_inputs(self) -> tuple[TensorInfo, ...]:
        return tuple(t for t in self.inputs if t is not None)

    @property
    def input_shapes(self) -> tuple[tuple[int, ...] | None, ...]:
        return tuple(None if t is None else t.shape for t in self.inputs)

    @property
    def output_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(t.shape for t in self.outputs)

    @property
    def input_dtypes(self) -> tuple[str | None, ...]:
        return tuple(None if t is None else t.dtype for t in self.inputs)

    @property
    def output_dtypes(self) -> tuple[str, ...]:
        return tuple(t.dtype for t in self.outputs)

    @property
    def inputs_constant(self) -> tuple[bool | None, ...]:
        return tuple(None if t is None else t.is_constant for t in self.inputs)

    @property
    def runtime_inputs(self) -> tuple[TensorInfo, ...]:
        return tuple(t for t in self.inputs if t is not None and not t.is_constant)

    @property
    def const_inputs(self) -> tuple[TensorInfo, ...]:
        return tuple(t for t in self.inputs if t is not None and t.is_constant)

    def describe(self) -> str:
        ins = ", ".join(
            "-" if t is None else f"{t.dtype}{list(t.shape)}{'c' if t.is_constant else ''}"
            for t in self.inputs
        )
        outs = ", ".join(f"{t.dtype}{list(t.shape)}" for t in self.outputs)
        sg = f"sg{self.subgraph}:" if self.subgraph else ""
        return f"#{sg}{self.index} {self.name} v{self.version} ({ins}) -> ({outs})"


@dataclass(frozen=True)
class SubgraphInfo:
    index: int
    name: str
    tensors: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def producers(self, tensor_index: int) -> list[OpInfo]:
        return [op for op in self.ops if any(t.index == tensor_index for t in op.outputs)]

    def consumers(self, tensor_index: int) -> list[OpInfo]:
        return [
            op for op in self.ops
            if any(t is not None and t.index == tensor_index for t in op.inputs)
        ]


@dataclass(frozen=True)
class ModelInfo:
    path: str | None
    version: int
    description: str | None
    subgraphs: tuple[SubgraphInfo, ...]
    schema_source: str | None = None

    @property
    def main(self) -> SubgraphInfo:
        return self.subgraphs[0]

    @property
    def ops(self) -> tuple[OpInfo, ...]:
        """Operators of the main subgraph (subgraph 0) in execution order."""
        return self.main.ops

    @property
    def all_ops(self) -> tuple[OpInfo, ...]:
        return tuple(op for sg in self.subgraphs for op in sg.ops)

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return self.main.inputs

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        return self.main.outputs

    @property
    def has_dynamic_inputs(self) -> bool:
        return any(t.is_dynamic for t in self.inputs)

    def op_histogram(self, all_subgraphs: bool = True) -> Counter:
        ops = self.all_ops if all_subgraphs else self.ops
        return Counter(op.name for op in ops)

    def custom_ops(self) -> list[OpInfo]:
        return [op for op in self.all_ops if op.is_custom]

    def flex_ops(self) -> list[OpInfo]:
        return [op for op in self.all_ops if op.is_flex]

    def summary(self) -> str:
        lines = [f"model: {self.path}  (schema v{self.version}, {len(self.subgraphs)} subgraph(s))"]
        for kind, ts in (("input", self.inputs), ("output", self.outputs)):
            for t in ts:
                lines.append(
                    f"  {kind} {t.name!r}: {t.dtype} shape={list(t.shape)} "
                    f"signature={list(t.shape_signature)}"
                    + ("  [DYNAMIC]" if t.is_dynamic else "")
                )
        hist = self.op_histogram()
        lines.append(f"  ops ({sum(hist.values())}): " + ", ".join(f"{k} x{v}" for k, v in sorted(hist.items())))
        if self.flex_ops():
            lines.append("  flex ops: " + ", ".join(sorted({op.name for op in self.flex_ops()})))
        return "\n".join(lines)


def _buffer_nonempty(buf) -> bool:
    if buf is None:
        return False
    data = getattr(buf, "data", None)
    if data is not None and len(data) > 0:
        return True
    # >2 GB models keep the data outside the flatbuffer (offset/size); offset 1 = placeholder
    return getattr(buf, "offset", 0) > 1 and getattr(buf, "size", 0) > 0


def _const_value(buf, dtype: str, shape: tuple[int, ...], max_elements: int | None):
    data = getattr(buf, "data", None)
    np_dtype = _NP_DTYPES.get(dtype)
    if data is None or np_dtype is None or len(data) == 0:
        return None
    n = 1
    for d in shape:
        n *= d
    if max_elements is not None and n > max_elements:
        return None
    raw = np.asarray(data, dtype=np.uint8).tobytes()
    itemsize = np.dtype(np_dtype).itemsize
    if len(raw) != n * itemsize:
        return None
    arr = np.frombuffer(raw, dtype=np_dtype).reshape(shape)
    arr.setflags(write=False)
    return arr


def _quant_array(values, dtype):
    return None if values is None or len(values) == 0 else np.asarray(values, dtype)


def _model_info_from_object(model, path: str | None, s, max_const_elements: int | None) -> ModelInfo:
    type_names = _enum_names(s.TensorType)
    op_names = _enum_names(s.BuiltinOperator)
    opt_names = _enum_names(s.BuiltinOptions)
    opt2_names = _enum_names(s.BuiltinOptions2) if hasattr(s, "BuiltinOptions2") else {}
    custom_code = op_names.get(32, "CUSTOM")
    buffers = model.buffers or []

    codes = []
    for oc in model.operatorCodes or []:
        # Same rule as tflite::GetBuiltinCode(): the larger of the two fields.
        code = max(int(getattr(oc, "builtinCode", 0) or 0), int(oc.deprecatedBuiltinCode or 0))
        cc = _to_str(oc.customCode)
        name = cc if (cc is not None and op_names.get(code) == custom_code) else op_names.get(code, f"BUILTIN_{code}")
        if op_names.get(code) != custom_code:
            cc = None
        codes.append((code, int(oc.version or 1), cc, name))

    subgraphs = []
    for sgi, sg in enumerate(model.subgraphs or []):
        tensors = []
        for ti, t in enumerate(sg.tensors or []):
            shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
            sig = getattr(t, "shapeSignature", None)
            sig = tuple(int(d) for d in sig) if sig is not None and len(sig) else shape
            dtype = type_names.get(int(t.type), f"type{t.type}").lower()
            buf = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
            is_const = t.buffer > 0 and _buffer_nonempty(buf)
            q = t.quantization
            quantized = q is not None and getattr(q, "scale", None) is not None and len(q.scale) > 0
            tensors.append(
                TensorInfo(
                    index=ti,
                    name=_to_str(t.name) or f"tensor{ti}",
                    shape=shape,
                    shape_signature=sig,
                    dtype=dtype,
                    buffer=int(t.buffer),
                    is_constant=bool(is_const),
                    quantized=bool(quantized),
                    is_variable=bool(getattr(t, "isVariable", False)),
                    const_value=_const_value(buf, dtype, shape, max_const_elements) if is_const else None,
                    quant_scale=_quant_array(q.scale, np.float32) if quantized else None,
                    quant_zero_point=_quant_array(q.zeroPoint, np.int64) if quantized else None,
                    quant_dimension=int(q.quantizedDimension or 0) if quantized else 0,
                )
            )
        ops = []
        for oi, op in enumerate(sg.operators or []):
            code, version, cc, name = codes[op.opcodeIndex]
            opts, opts_type = {}, None
            if getattr(op, "builtinOptions", None) is not None:
                opts_type = opt_names.get(int(op.builtinOptionsType))
                opts = _plain(op.builtinOptions)
            elif getattr(op, "builtinOptions2", None) is not None:
                opts_type = opt2_names.get(int(op.builtinOptions2Type))
                opts = _plain(op.builtinOptions2)
            ins = tuple(tensors[i] if i >= 0 else None for i in (op.inputs if op.inputs is not None else []))
            outs = tuple(tensors[i] for i in (op.outputs if op.outputs is not None else []) if i >= 0)
            ops.append(
                OpInfo(
                    subgraph=sgi, index=oi, name=name, builtin_code=code, version=version,
                    custom_code=cc, inputs=ins, outputs=outs, options_type=opts_type, options=opts,
                )
            )
        subgraphs.append(
            SubgraphInfo(
                index=sgi,
                name=_to_str(sg.name) or f"subgraph{sgi}",
                tensors=tuple(tensors),
                ops=tuple(ops),
                inputs=tuple(tensors[i] for i in (sg.inputs if sg.inputs is not None else [])),
                outputs=tuple(tensors[i] for i in (sg.outputs if sg.outputs is not None else [])),
            )
        )
    return ModelInfo(
        path=path,
        version=int(model.version),
        description=_to_str(model.description),
        subgraphs=tuple(subgraphs),
        schema_source=SCHEMA_SOURCE,
    )


def load_model_info(path_or_bytes, max_const_elements: int | None = _MAX_CONST_VALUE_ELEMENTS) -> ModelInfo:
    """Parse a .tflite file (path, bytes or bytearray) into a :class:`ModelInfo`.

    Constant tensors keep their values (``TensorInfo.const_value``) up to `max_const_elements`
    elements (None: all of them, e.g. to rebuild the network from its weights).
    """
    s = schema()
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        buf, path = bytearray(path_or_bytes), None
    else:
        path = os.fspath(path_or_bytes)
        with open(path, "rb") as f:
            buf = bytearray(f.read())
    if len(buf) < 8 or bytes(buf[4:8]) != b"TFL3":
        raise ValueError(f"{path or '<bytes>'}: not a TFLite flatbuffer (file identifier != 'TFL3')")
    model = s.ModelT.InitFromPackedBuf(buf, 0)
    return _model_info_from_object(model, path, s, max_const_elements)


def _main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Summarise a .tflite model (no TensorFlow needed).")
    p.add_argument("model")
    p.add_argument("--ops", action="store_true", help="list every operator")
    a = p.parse_args(argv)
    info = load_model_info(a.model)
    print(info.summary())
    if a.ops:
        for op in info.all_ops:
            print("  " + op.describe())
    print(f"(schema reader: {info.schema_source})")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
