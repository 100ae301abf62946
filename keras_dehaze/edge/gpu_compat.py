"""Offline LiteRT / TFLite GPU-delegate compatibility checker for ``.tflite`` files.

Why this exists: ``tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)`` in
TF 2.21 reports "compatible" for every model (its checks were removed upstream), so it can
not back a compatibility claim. This module reads the flatbuffer itself (``keras_dehaze.edge.flatbuffer``,
no TensorFlow needed) and applies the GPU delegate's own rules, encoded as data below
(``OP_RULES``, ``CUSTOM_OP_RULES``, the tensor type/rank tables). A model is *compatible*
when every operator would be claimed by the delegate, so the whole graph runs as ONE GPU
partition (the delegate delegates only the largest partition by default,
``max_delegated_partitions = 1``), and the graph has no dynamic shapes.

Where every rule comes from (LiteRT = https://github.com/google-ai-edge/LiteRT, file
versions read 2026-11; the same code lived under tensorflow/lite/ in the TF repo before the
move):

[P] ``tflite/delegates/gpu/common/model_builder.cc`` (LiteRT @34ec5ba):
    - ``NewOperationParser()`` switch = the SUPPORTED OP SET. Any builtin not listed there
      gets ``UnsupportedOperationParser`` ("Operation is not supported."). E.g. GATHER_ND,
      TOPK_V2, SHAPE, ARG_MAX, CEIL, ROUND, BATCH_TO_SPACE_ND, SPACE_TO_BATCH_ND,
      EXPAND_DIMS, SQUEEZE, WHILE have no entry.
      DEQUANTIZE / QUANTIZE have a parser only when quantized ops are allowed
      (``TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT``; on in
      ``TfLiteGpuDelegateOptionsV2Default()`` and on by default in the Android API).
    - CUSTOM ops: only ``Convolution2DTransposeBias``, ``MaxPoolingWithArgmax2D``,
      ``MaxUnpooling2D``, ``Resampler``; everything else goes to
      ``NewCustomOperationParser()`` which (``common/default/custom_parsers.cc``) returns
      ``UnimplementedOperationParser``. Flex ops (``Flex*``, SELECT_TF_OPS) are CUSTOM ops
      and therefore never delegated.
    - ``CheckMaxSupportedOpVersion(registration, N)`` in each parser's ``IsSupported`` =
      ``OpRule.max_version`` (e.g. GATHER 1, RESHAPE 1, ADD/SUB/... 2, MUL 3, CONV_2D 6,
      FULLY_CONNECTED 9, TRANSPOSE/STRIDED_SLICE 4). The version is the operator-code
      version stored in the model (an int8 GATHER is v2 and is rejected).
    - ``ElementwiseOperationParser::IsSupported``: a comparison (GREATER, LESS, EQUAL, ...)
      is only taken when its bool output feeds exactly one CAST/SELECT/SELECT_V2 whose
      output is float. ``CastOperationParser::IsSupported``: bool->float needs a single
      producer/consumer on its input and a single consumer on its output.
    - ``GetOpsToReplace()`` / ``IsAllAllowedTensors()``: every input/output tensor of a
      node with ``dims->size >= 5`` is rejected (no 5-D exception for any op), and every
      NON-constant (arena) tensor must be float32/float16 (+ int8/uint8 with quant ops on);
      extra types: CAST in {bool,float32,int32} -> {float32,int32,bool}, GATHER and
      ONE_HOT inputs may be int32, SELECT/SELECT_V2/LOGICAL_AND inputs may be bool, and
      comparison/LOGICAL_AND outputs may be bool. Hence a runtime int64 tensor is never
      allowed, and int32 index arithmetic (ADD/MUL on int32) is not delegated.
    - Parse-time failures (``IsSupported`` passes but ``Parse`` fails, which makes
      ``ModifyGraphWithDelegate`` fail outright): GATHER adds input 0 with
      ``reader->AddInput`` which rejects constant tensors (``object_reader.cc``
      ``ReadNonConstantTensor``: "value is a constant tensor"), so GATHER params must be a
      runtime tensor; STRIDED_SLICE with a negative stride ("Reverse slices are not
      supported").
[C] ``tflite/tools/versioning/gpu_compatibility.cc`` (LiteRT @007226f;
    ``CheckGpuDelegateCompatibility(op_sig, flags)``, called from the parsers'
    ``IsSupported``, "Logics here used to be in TFLiteOperationParser::IsSupported()"):
    the per-op constraints in ``_CHECKS`` (each function names its C++ counterpart), e.g.
    GATHER: 2 runtime inputs or 1 runtime + 1 constant (indices may be runtime OR constant),
    indices 1-D and int32; MEAN/SUM/REDUCE_*: constant int32 axes; RESHAPE/TILE/TRANSPOSE:
    exactly one runtime input (a shape computed at run time, as left by a dynamic batch, is
    rejected); STRIDED_SLICE: no ellipsis/new_axis/shrink_axis mask, input rank 3 or 4;
    SLICE: rank 3 or 4; PAD: paddings 3x2 or 4x2; MIRROR_PAD: REFLECT only; SOFTMAX beta 1;
    DEPTHWISE_CONV_2D 4-D tensors; fused activation SIGN_BIT rejected; ADD/MUL broadcast
    rules with ``GpuCompatibilityFlags::kStandard`` (``gpu_compatibility.h`` @468ca7d: the
    default the delegate passes; the flatbuffer overload assumes ``kEnhancedBroadcast``).
    Note [C] also has cases (TOPK_V2, BITCAST, EMBEDDING_LOOKUP, DYNAMIC_UPDATE_SLICE,
    REVERSE_V2, REDUCE_ANY/ALL, CEIL, ROUND, ATAN2, LOGICAL_OR/NOT, StableHLO ...) that the
    delegate's parser table [P] does not contain; those ops are NOT delegated, so this
    checker follows [P] for the op set.
[D] ``tflite/delegates/gpu/delegate.cc`` (LiteRT @63be5f6): the delegate sets
    ``delegate_.flags = kTfLiteDelegateFlagsPerOperatorProfiling`` only, i.e. not
    ``kTfLiteDelegateFlagsAllowDynamicTensors``: the interpreter refuses to apply it to a
    graph with dynamic-sized tensors ("Attempting to use a delegate that only supports
    static-sized tensors ..."), and kernels are built for the shapes present when the
    delegate is applied. So any -1 in an input's ``shape_signature`` (dynamic batch etc.) is
    flagged at model level (project rule, docs/deployment.md: rebuild with batch 1 first).
[W] Documentation, https://ai.google.dev/edge/litert/performance/gpu ("GPU ML operations
    support", page updated 2025-07-24): ADD, AVERAGE_POOL_2D, CONCATENATION, CONV_2D,
    DEPTHWISE_CONV_2D v1-2, EXP, FULLY_CONNECTED, LOGICAL_AND, LOGISTIC, LSTM v2 (Basic
    LSTM only), MAX_POOL_2D, MAXIMUM, MINIMUM, MUL, PAD, PRELU, RELU, RELU6, RESHAPE,
    RESIZE_BILINEAR v1-3, SOFTMAX, STRIDED_SLICE, SUB, TRANSPOSE_CONV; "By default, all ops
    are only supported at version 1. Enabling quantization support enables the appropriate
    versions". This documented list is a subset of [P]; it is kept as ``DOCUMENTED_OPS`` and
    ops outside it are reported as notes, not failures.
[T] The older TF-repo copy, tensorflow/lite/tools/versioning/gpu_compatibility.cc
    (tensorflow/tensorflow @03a5e4e), was stricter in two places kept here as notes only:
    GATHER "Does not accept INT32 input", FULLY_CONNECTED "doesn't support constant input".

Not modelled (needs the interpreter/GPU): the FP16 partition helper's graph-level
partitioning, per-GPU limits (texture sizes, OpenCL vs OpenGL backends), and other
parse-time shape checks. ``compatible=True`` means "no rule above is violated", not a run
on a device.

Two backends, two verdicts. The rules above are those of the CLASSIC GPU delegate (OpenCL /
OpenGL ES, ``tflite/delegates/gpu``), which is what Android/desktop builds of TFLite use. The
ai-edge-litert 2.x wheel executes GPU models on a different runtime, the WebGPU accelerator
(``libLiteRtWebGpuAccelerator.so`` through ``CompiledModel``; keras_dehaze/edge/litert_gpu.py). Its
op set was measured, not read from source (ai-edge-litert 2.3.0 on Mesa 25 lavapipe, 2026-12,
[M]): it also takes TOPK_V2 and 2-D STRIDED_SLICE (the classic rules want rank 3 or 4), and
refuses GATHER_ND, STRIDED_SLICE with shrink_axis_mask or a negative stride, and the int8
TRANSPOSE_CONV (v4) of the bundled int8 AE-CR-Net. ``backend="webgpu"`` applies the classic rules
with those measured differences; anything not measured is assumed to follow the classic rules.
Every report is labelled with its backend ("classic OpenCL/GL delegate rules: ...",
"LiteRT WebGPU accelerator rules: ..."); the CLI prints both.

Both are static estimates. The check that counts is the executed one: compile the model on the
accelerator GPU-only and run it (``keras_dehaze.edge.litert_gpu.compile_on_gpu``, which refuses
partial acceleration; ``edge/infer.py --accelerator gpu``; tests/edge/test_litert_gpu.py).

CLI::

    python edge/gpu_compat.py model.tflite [--no-quant] [--json] [--backend classic|webgpu|both]

prints the verdict(s) and the offending ops; exit code 0 when every printed verdict is
compatible, 1 otherwise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from keras_dehaze.edge.flatbuffer import ModelInfo, OpInfo, SubgraphInfo, TensorInfo, load_model_info, schema

__all__ = [
    "check_gpu_compatibility",
    "check_all_backends",
    "BACKENDS",
    "WEBGPU_OP_RULES",
    "GpuReport",
    "IncompatibleOp",
    "OpRule",
    "OP_RULES",
    "CUSTOM_OP_RULES",
    "DOCUMENTED_OPS",
    "RULES_VERSION",
    "RULE_SOURCES",
]

RULES_VERSION = (
    "LiteRT GPU delegate rules: model_builder.cc@34ec5ba, gpu_compatibility.cc@007226f, "
    "gpu_compatibility.h@468ca7d, delegate.cc@63be5f6 (google-ai-edge/LiteRT); "
    "docs ai.google.dev/edge/litert/performance/gpu (2025-07-24); encoded 2026-11"
)
_LITERT = "https://github.com/google-ai-edge/LiteRT/blob/main/"
RULE_SOURCES = {
    "P": _LITERT + "tflite/delegates/gpu/common/model_builder.cc",
    "C": _LITERT + "tflite/tools/versioning/gpu_compatibility.cc",
    "D": _LITERT + "tflite/delegates/gpu/delegate.cc",
    "W": "https://ai.google.dev/edge/litert/performance/gpu",
    "T": "https://github.com/tensorflow/tensorflow/blob/master/tensorflow/lite/tools/versioning/gpu_compatibility.cc",
    "O": _LITERT + "tflite/delegates/gpu/common/object_reader.cc",
}

WEBGPU_RULES_VERSION = (
    "LiteRT WebGPU accelerator (libLiteRtWebGpuAccelerator.so, ai-edge-litert 2.3.0), measured on "
    "Mesa 25.0.7 lavapipe 2026-12: classic delegate rules + TOPK_V2 + 2-D STRIDED_SLICE; int8 "
    "TRANSPOSE_CONV refused"
)
# backend key -> label printed with its verdict
BACKENDS = {
    "classic": "classic OpenCL/GL delegate rules",
    "webgpu": "LiteRT WebGPU accelerator rules",
}

# [W] documented list (subset of the parser table); informational only.
DOCUMENTED_OPS = frozenset(
    """ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D EXP FULLY_CONNECTED
    LOGICAL_AND LOGISTIC LSTM MAX_POOL_2D MAXIMUM MINIMUM MUL PAD PRELU RELU RELU6 RESHAPE
    RESIZE_BILINEAR SOFTMAX STRIDED_SLICE SUB TRANSPOSE_CONV""".split()
)


@dataclass(frozen=True)
class OpRule:
    """One entry of the delegate's parser table [P].

    max_version: ``CheckMaxSupportedOpVersion`` bound in the parser (None = no check).
    checks: names of constraint functions in ``_CHECKS`` ([C] and parser rules).
    quant_only: parser exists only with quantized ops allowed (QUANTIZE, DEQUANTIZE).
    """

    max_version: int | None
    checks: tuple[str, ...] = ()
    quant_only: bool = False


_E1 = ("elementwise_1",)  # ABS, EXP, ... : 1 runtime input, 0 const, 1 output
_E2 = ("elementwise_2", "activation")  # DIV, SUB, ... : 2 runtime or 1 runtime + 1 const
_CMP = ("elementwise_2", "logical_consumer")  # comparisons: bool output must feed CAST/SELECT

# [P] NewOperationParser() switch + per-parser CheckMaxSupportedOpVersion; checks from [C].
OP_RULES: dict[str, OpRule] = {
    "ABS": OpRule(2, _E1),
    "ADD": OpRule(2, ("two_inputs", "add_mul_broadcast", "activation")),
    "ADD_N": OpRule(2, ("add_n_two_inputs",)),
    "AVERAGE_POOL_2D": OpRule(2, ("pooling",)),
    "BATCH_MATMUL": OpRule(None, ("batch_matmul",)),
    "CAST": OpRule(None, ("cast",)),
    "CONCATENATION": OpRule(2, ()),
    "CONV_2D": OpRule(6, ("convolution_io", "strides_dilation", "activation")),
    "COS": OpRule(2, _E1),
    "CUMSUM": OpRule(1, ("cumsum",)),
    "DENSIFY": OpRule(1, ("densify",)),
    "DEPTHWISE_CONV_2D": OpRule(6, ("convolution_io", "strides_dilation", "activation", "depthwise")),
    "DEPTH_TO_SPACE": OpRule(None, ("one_runtime_in_one_out", "block_size")),
    "DEQUANTIZE": OpRule(3, ("dequantize",), quant_only=True),
    "DIV": OpRule(2, _E2),
    "EQUAL": OpRule(2, _CMP),
    "ELU": OpRule(2, _E1),
    "EXP": OpRule(2, _E1),
    "FLOOR": OpRule(2, _E1),
    "FLOOR_DIV": OpRule(2, _E2),
    "FLOOR_MOD": OpRule(2, _E2),
    "FULLY_CONNECTED": OpRule(9, ("fully_connected",)),
    "GATHER": OpRule(1, ("gather", "gather_params_runtime")),
    "GELU": OpRule(2, _E1),
    "GREATER": OpRule(2, _CMP),
    "GREATER_EQUAL": OpRule(2, _CMP),
    "HARD_SWISH": OpRule(None, ("one_runtime_in_one_out",)),
    "LESS": OpRule(2, _CMP),
    "LESS_EQUAL": OpRule(2, _CMP),
    "LOGISTIC": OpRule(2, _E1),
    "LOG": OpRule(2, _E1),
    "LOGICAL_AND": OpRule(2, ("elementwise_2",)),
    "LSTM": OpRule(4, ("lstm",)),
    "MAXIMUM": OpRule(2, _E2),
    "MAX_POOL_2D": OpRule(2, ("pooling",)),
    "MEAN": OpRule(None, ("mean",)),
    "MINIMUM": OpRule(2, _E2),
    "MIRROR_PAD": OpRule(2, ("mirror_pad_mode", "pad")),
    "MUL": OpRule(3, ("two_inputs", "mul_broadcast", "activation")),
    "NEG": OpRule(2, _E1),
    "NOT_EQUAL": OpRule(2, _CMP),
    "ONE_HOT": OpRule(1, ("one_hot",)),
    "PACK": OpRule(None, ()),
    "PAD": OpRule(2, ("pad",)),
    "PADV2": OpRule(2, ("pad",)),
    "POW": OpRule(2, _E2),
    "PRELU": OpRule(1, ()),
    "QUANTIZE": OpRule(2, ("one_runtime_in_one_out",), quant_only=True),
    "REDUCE_MAX": OpRule(None, ("reduce",)),
    "REDUCE_MIN": OpRule(None, ("reduce",)),
    "REDUCE_PROD": OpRule(None, ("reduce",)),
    "RELU": OpRule(2, ()),
    "RELU6": OpRule(2, ()),
    "RELU_0_TO_1": OpRule(2, ()),
    "RELU_N1_TO_1": OpRule(2, ()),
    "LEAKY_RELU": OpRule(2, ()),
    "RESHAPE": OpRule(1, ("one_runtime_in_one_out",)),
    "RESIZE_BILINEAR": OpRule(3, ("one_runtime_in_one_out", "resize_bilinear")),
    "RESIZE_NEAREST_NEIGHBOR": OpRule(3, ("one_runtime_in_one_out",)),
    "RSQRT": OpRule(2, _E1),
    "SELECT": OpRule(1, ("select",)),
    "SELECT_V2": OpRule(1, ("select",)),
    "SIGN": OpRule(2, _E1),
    "SIN": OpRule(2, _E1),
    "SLICE": OpRule(2, ("slice",)),
    "SOFTMAX": OpRule(2, ("softmax",)),
    "SPACE_TO_DEPTH": OpRule(2, ("one_runtime_in_one_out", "block_size")),
    "SPLIT": OpRule(None, ()),
    "SPLIT_V": OpRule(None, ()),
    "SQRT": OpRule(2, _E1),
    "SQUARE": OpRule(2, _E1),
    "SQUARED_DIFFERENCE": OpRule(2, _E2),
    "STRIDED_SLICE": OpRule(4, ("strided_slice",)),
    "SUB": OpRule(2, _E2),
    "SUM": OpRule(None, ("reduce",)),
    "TANH": OpRule(2, _E1),
    "TILE": OpRule(None, ("one_runtime_in_one_out",)),
    "TRANSPOSE": OpRule(4, ("one_runtime_in_one_out",)),
    "TRANSPOSE_CONV": OpRule(3, ("convolution_io", "strides")),
    "UNPACK": OpRule(None, ()),
}

# [M] The WebGPU accelerator's differences from OP_RULES (measured, see the module docstring).
WEBGPU_OP_RULES: dict[str, OpRule] = {
    **OP_RULES,
    "TOPK_V2": OpRule(None, ("topk_const_k",)),
    "STRIDED_SLICE": OpRule(4, ("strided_slice_webgpu",)),
    "TRANSPOSE_CONV": OpRule(3, ("convolution_io", "strides", "float_weights")),
}
WEBGPU_EXTRA_OUTPUT_TYPES = {"TOPK_V2": frozenset({"int32"})}
WEBGPU_EXTRA_INPUT_TYPES = {"TOPK_V2": frozenset({"int32"})}

# [P] kTfLiteBuiltinCustom branch; checks from [C] CheckCustomOpsGpuDelegateCompatibility.
CUSTOM_OP_RULES: dict[str, OpRule] = {
    "Convolution2DTransposeBias": OpRule(None, ("min_two_inputs",)),
    "MaxPoolingWithArgmax2D": OpRule(None, ("custom_pool_argmax",)),
    "MaxUnpooling2D": OpRule(None, ("two_runtime_in_one_out",)),
    "Resampler": OpRule(None, ("two_runtime_in_one_out",)),
}

# [P] GetOpsToReplace(): allowed types of NON-constant tensors.
BASE_TYPES = frozenset({"float32", "float16"})
QUANT_TYPES = frozenset({"int8", "uint8"})
_LOGICAL_CODES = frozenset({"GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL", "NOT_EQUAL"})
EXTRA_INPUT_TYPES = {
    "CAST": frozenset({"bool", "float32", "int32"}),
    "ONE_HOT": frozenset({"int32"}),
    "SELECT": frozenset({"bool"}),
    "SELECT_V2": frozenset({"bool"}),
    "LOGICAL_AND": frozenset({"bool"}),
    "GATHER": frozenset({"int32"}),
}
EXTRA_OUTPUT_TYPES = {
    "CAST": frozenset({"float32", "int32", "bool"}),
    "LOGICAL_AND": frozenset({"bool"}),
    **{name: frozenset({"bool"}) for name in _LOGICAL_CODES},
}
MAX_RANK = 4  # [P] IsAllAllowedTensors: dims->size >= 5 -> rejected


# --------------------------------------------------------------------------- report types


@dataclass(frozen=True)
class IncompatibleOp:
    subgraph: int
    index: int
    name: str
    version: int
    reasons: tuple[str, ...]
    signature: str  # OpInfo.describe()

    def __str__(self) -> str:
        return f"{self.signature}\n      - " + "\n      - ".join(self.reasons)


@dataclass
class GpuReport:
    compatible: bool
    incompatible_ops: list[IncompatibleOp]
    model_issues: list[str]
    notes: list[str]
    n_ops: int
    n_ops_supported: int
    allow_quant_ops: bool
    rules_version: str = RULES_VERSION
    rule_sources: dict[str, str] = field(default_factory=lambda: dict(RULE_SOURCES))
    path: str | None = None
    backend: str = "classic"

    @property
    def backend_label(self) -> str:
        return BACKENDS[self.backend]

    @property
    def incompatible_op_names(self) -> list[str]:
        return sorted({op.name for op in self.incompatible_ops})

    def reasons_for(self, op_name: str) -> list[str]:
        return [r for op in self.incompatible_ops if op.name == op_name for r in op.reasons]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["incompatible_op_names"] = self.incompatible_op_names
        d["backend_label"] = self.backend_label
        return d

    def format(self) -> str:
        verdict = "COMPATIBLE" if self.compatible else "NOT COMPATIBLE"
        lines = [
            f"{self.backend_label}: {verdict}  ({self.path or '<model>'})",
            f"  ops claimed: {self.n_ops_supported}/{self.n_ops}"
            f"  (quantized ops {'allowed' if self.allow_quant_ops else 'not allowed'})",
        ]
        if self.model_issues:
            lines.append("  model-level issues:")
            lines += [f"    - {m}" for m in self.model_issues]
        if self.incompatible_ops:
            lines.append(f"  incompatible ops ({len(self.incompatible_ops)}):")
            lines += [f"    {op}" for op in self.incompatible_ops]
        if self.notes:
            lines.append("  notes:")
            lines += [f"    - {n}" for n in self.notes]
        lines.append(f"  rules: {self.rules_version}")
        lines.append("  (a static estimate: the executed check, keras_dehaze/edge/litert_gpu.py / "
                     "infer.py --accelerator gpu, is the one that counts)")
        return "\n".join(lines)

    __str__ = format


# --------------------------------------------------------------------------- rule helpers


@dataclass
class _Ctx:
    sg: SubgraphInfo
    allow_quant: bool
    act_names: dict[int, str]
    mirror_modes: dict[int, str]
    lstm_kernels: dict[int, str]
    fc_formats: dict[int, str]
    backend: str = "classic"


def _dims(t: TensorInfo | None) -> tuple[int, ...]:
    return () if t is None else t.shape


def _n_runtime(op: OpInfo) -> int:
    # [C] GetNumberOfRuntimeInputs: not constant and not an omitted optional input
    return len(op.runtime_inputs)


def _n_const(op: OpInfo) -> int:
    return len(op.const_inputs)


def _inputs_outputs(op: OpInfo, runtime: int, outputs: int) -> list[str]:
    """[C] CheckInputsOutputs."""
    r = []
    if _n_runtime(op) != runtime:
        r.append(f"expected {runtime} runtime input tensor(s), node has {_n_runtime(op)} "
                 f"(inputs constant={list(op.inputs_constant)}) [C CheckInputsOutputs]")
    if len(op.outputs) != outputs:
        r.append(f"expected {outputs} output tensor(s), node has {len(op.outputs)} [C]")
    return r


def _inputs_consts_outputs(op: OpInfo, runtime: int, const: int, outputs: int) -> list[str]:
    """[C] CheckInputsConstsOutputs."""
    r = []
    if _n_const(op) != const:
        r.append(f"expected {const} constant input(s), node has {_n_const(op)} [C CheckInputsConstsOutputs]")
    return r + _inputs_outputs(op, runtime, outputs)


def _axes_int32_const(op: OpInfo, idx: int) -> list[str]:
    """[C] CheckAxesAreInt32Const."""
    if idx >= len(op.inputs) or op.inputs[idx] is None:
        return [f"{op.name}: axes input missing [C]"]
    axes = op.inputs[idx]
    if not axes.is_constant:
        return [f"{op.name} is only supported with constant axes [C CheckAxesAreInt32Const]"]
    if axes.dtype != "int32":
        return [f"{op.name} supports int32 axes, node has {axes.dtype} [C CheckAxesAreInt32Const]"]
    return []


def _act(op: OpInfo, ctx: _Ctx) -> list[str]:
    """[C] IsActivationSupported: everything except SIGN_BIT."""
    a = int(op.options.get("fused_activation_function", 0) or 0)
    if ctx.act_names.get(a) == "SIGN_BIT":
        return ["fused activation SIGN_BIT is not supported [C IsActivationSupported]"]
    return []


def _broadcast_standard(d0: tuple[int, ...], d1: tuple[int, ...]) -> list[str]:
    """[C] CheckAddMulBroadcastCompatibility with GpuCompatibilityFlags::kStandard."""
    if len(d0) > 1 and len(d1) > 1 and len(d0) != len(d1):
        longer, shorter = (d0, d1) if len(d0) >= len(d1) else (d1, d0)
        ok = (
            (len(longer) == 4 and len(shorter) == 3 and longer[0] == 1)
            or (len(longer) == 4 and len(shorter) == 2 and longer[0] == 1 and tuple(shorter) == (1, 1))
            or (len(longer) == 4 and len(shorter) == 2 and longer[0] == shorter[0] and longer[3] == shorter[1])
        )
        if not ok:
            return [f"doesn't support broadcasting {list(d0)} with {list(d1)} [C CheckAddMulBroadcastCompatibility]"]
    return []


# --------------------------------------------------------------------------- constraint functions


def _c_two_inputs(op, ctx):
    return [] if len(op.inputs) == 2 else [f"{op.name} requires two input tensors [C]"]


def _c_add_mul_broadcast(op, ctx):
    if len(op.inputs) != 2:
        return []
    return _broadcast_standard(_dims(op.inputs[0]), _dims(op.inputs[1]))


def _c_mul_broadcast(op, ctx):
    # [C] kTfLiteBuiltinMul (LiteRT): broadcast check only when the ranks differ
    if len(op.inputs) != 2 or len(_dims(op.inputs[0])) == len(_dims(op.inputs[1])):
        return []
    return _broadcast_standard(_dims(op.inputs[0]), _dims(op.inputs[1]))


def _c_add_n_two_inputs(op, ctx):
    return [] if len(op.inputs) == 2 else ["ADD_N only supports 2 inputs [C]"]


def _c_pooling(op, ctx):
    """[C] CheckPooling2DGpuDelegateCompatibility (builtin case)."""
    o = op.options
    r = _inputs_outputs(op, 1, 1)
    if int(o.get("filter_height", 0)) <= 0 or int(o.get("filter_width", 0)) <= 0:
        r.append("incorrect kernel values [C CheckKernels]")
    if int(o.get("stride_h", 0)) <= 0 or int(o.get("stride_w", 0)) <= 0:
        r.append("incorrect stride values [C CheckStrides]")
    return r + _act(op, ctx)


def _c_custom_pool_argmax(op, ctx):
    return _inputs_outputs(op, 1, 2)


def _c_batch_matmul(op, ctx):
    r = []
    if not (len(op.inputs) == 2 and len(op.outputs) == 1):
        r.append("BATCH_MATMUL expects 2 inputs and 1 output [C]")
    n = _n_runtime(op)
    # [P] BatchedMatMulOperationParser::Parse: 2 runtime, or 1 runtime + constant 2-D rhs
    if n == 1 and not (len(op.inputs) == 2 and op.inputs[1] is not None
                       and op.inputs[1].is_constant and op.inputs[1].rank == 2):
        r.append("BATCH_MATMUL with a constant operand needs it as 2-D second input [P Parse]")
    elif n not in (1, 2):
        r.append("not supported batched mat mul case [P Parse]")
    return r


def _c_cast(op, ctx):
    r = _inputs_outputs(op, 1, 1)
    if r or not op.inputs or op.inputs[0] is None:
        return r
    src, dst = op.inputs[0].dtype, op.outputs[0].dtype
    fl = {"float16", "float32"}
    if src == "bool" and dst in fl:
        # [P] CastOperationParser::IsSupported
        if len(ctx.sg.producers(op.inputs[0].index)) != 1 or len(ctx.sg.consumers(op.inputs[0].index)) != 1:
            r.append("CAST bool->float: input must have exactly one producer and one consumer [P]")
        if len(ctx.sg.consumers(op.outputs[0].index)) != 1:
            r.append("CAST bool->float is not supported for (graph) outputs [P]")
        return r
    if (src in fl and dst == "bool") or (src in {"float32", "int32"} and dst in {"float32", "int32"}):
        return r
    return r + [f"not supported Cast case: {src} -> {dst} [C]"]


def _c_convolution_io(op, ctx):
    """[C] CheckConvoultionInputOutput."""
    r = []
    if _n_runtime(op) > 2:
        r.append(f"expected 1 or 2 runtime inputs, node has {_n_runtime(op)} [C]")
    if len(op.outputs) != 1:
        r.append("expected 1 output [C]")
    if _n_runtime(op) == 1 and len(op.inputs) < 2:
        r.append("weights tensor missing [C CheckTensorIsAvailable]")
    return r


def _c_strides(op, ctx):
    o = op.options
    if int(o.get("stride_h", 0)) <= 0 or int(o.get("stride_w", 0)) <= 0:
        return ["incorrect stride values [C CheckStrides]"]
    return []


def _c_strides_dilation(op, ctx):
    o = op.options
    r = _c_strides(op, ctx)
    if int(o.get("dilation_h_factor", 1)) <= 0 or int(o.get("dilation_w_factor", 1)) <= 0:
        r.append("incorrect dilation values [C CheckDilation]")
    return r


def _c_activation(op, ctx):
    return _act(op, ctx)


def _c_depthwise(op, ctx):
    """[C] CheckDepthwiseConvGpuDelegateCompatibility (LiteRT version)."""
    if len(op.inputs) < 2 or op.inputs[0] is None or op.inputs[1] is None or not op.outputs:
        return ["DEPTHWISE_CONV_2D needs input, filter and output [C]"]
    inp, flt, out = op.inputs[0], op.inputs[1], op.outputs[0]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    r = []
    for what, t in (("input", inp), ("filter", flt), ("output", out)):
        if t.rank != 4:
            r.append(f"{what}.dims.size != 4 [C]")
    if r:
        return r
    dm = int(op.options.get("depth_multiplier", 1))
    if inp.shape[0] != out.shape[0]:
        r.append("input.b != output.b [C]")
    if flt.shape[3] != out.shape[3]:
        r.append("filter.i != output.c [C]")
    if out.shape[3] != inp.shape[3] * dm:
        r.append("output.c != input.c * depth_multiplier [C]")
    if bias is not None and bias.num_elements != out.shape[3]:
        r.append("bias.size != output.c [C]")
    return r


def _c_cumsum(op, ctx):
    if len(op.inputs) != 2:
        return ["CUMSUM expects 2 inputs and 1 output [C]"]
    x, axis, y = op.inputs[0], op.inputs[1], op.outputs[0]
    if (x is None or x.dtype not in ("float16", "float32") or y.dtype != x.dtype
            or axis is None or axis.dtype != "int32" or not axis.is_constant):
        return ["CUMSUM: input/output must be float and axis a constant int32 [C]"]
    return []


def _c_densify(op, ctx):
    return _inputs_outputs(op, 0, 1)


def _c_one_runtime_in_one_out(op, ctx):
    return _inputs_outputs(op, 1, 1)


def _c_two_runtime_in_one_out(op, ctx):
    return _inputs_outputs(op, 2, 1)


def _c_min_two_inputs(op, ctx):
    return [] if len(op.inputs) >= 2 else ["weights tensor missing [C CheckTensorIsAvailable]"]


def _c_block_size(op, ctx):
    b = int(op.options.get("block_size", 0))
    if b == 1:
        return [f"{op.name} block_size = 1 is a no-op [C]"]
    if b < 1:
        return [f"{op.name} block_size must be > 1 [C]"]
    return []


def _c_dequantize(op, ctx):
    r = []
    if len(op.inputs) != 1 or len(op.outputs) != 1:
        r.append("DEQUANTIZE expects 1 input and 1 output [C]")
    if op.inputs and op.inputs[0] is not None and op.inputs[0].dtype == "int16":
        r.append("unsupported dequantization type int16 [C]")
    return r


def _c_fully_connected(op, ctx):
    o = op.options
    r = []
    if ctx.fc_formats.get(int(o.get("weights_format", 0)), "DEFAULT") != "DEFAULT":
        r.append("unsupported FullyConnected weights format [C]")
    if _n_runtime(op) > 2:
        r.append("FullyConnected doesn't support more than 2 runtime inputs [C]")
    if o.get("keep_num_dims") and op.inputs and op.inputs[0] is not None and op.outputs:
        if op.inputs[0].rank != op.outputs[0].rank:
            r.append("keep_num_dims with different input/output rank [C]")
    return r


def _c_gather(op, ctx):
    """[C] kTfLiteBuiltinGather (+ kStandard flags: genuinely 1-D indices)."""
    r = []
    ok_a = not _inputs_consts_outputs(op, 2, 0, 1)
    ok_b = not _inputs_consts_outputs(op, 1, 1, 1)
    if not (ok_a or ok_b):
        r.append("GATHER can only handle 2 runtime inputs or 1 runtime + 1 constant input [C]")
    if len(op.inputs) < 2 or op.inputs[1] is None:
        return r + ["GATHER indices missing [C]"]
    idx = op.inputs[1]
    if idx.rank != 1:
        r.append(f"only 1-D indices are supported, indices have shape {list(idx.shape)} [C]")
    if idx.dtype != "int32":
        r.append(f"only int32 indices are accepted, indices are {idx.dtype} [C]")
    return r


def _c_gather_params_runtime(op, ctx):
    # [P] GatherOperationParser::Parse -> reader->AddInput(node, 0) -> [O] ReadNonConstantTensor
    if op.inputs and op.inputs[0] is not None and op.inputs[0].is_constant:
        return ["GATHER params (input 0) are a constant tensor: the parser only takes a runtime "
                "params tensor ('value is a constant tensor'), delegate build fails [P Parse, O]"]
    return []


def _c_lstm(op, ctx):
    o = op.options
    kernel = ctx.lstm_kernels.get(int(o.get("kernel_type", 0)), "FULL")
    act = ctx.act_names.get(int(o.get("fused_activation_function", 0)), "NONE")
    r = []
    if kernel == "FULL":
        if len(op.inputs) not in (20, 24):
            r.append(f"full LSTM expects 20 or 24 inputs, node has {len(op.inputs)} [C]")
        if len(op.outputs) != 1:
            r.append("full LSTM expects 1 output [C]")
        if act not in ("TANH",):  # schema has no SIGMOID fused activation
            r.append(f"only sigmoid or tanh activation is supported, node has {act} [C]")
    else:
        r += _inputs_consts_outputs(op, 3, 2, 4)
        if act != "TANH":
            r.append(f"basic LSTM: only TANH activation is supported, node has {act} [C]")
        if float(o.get("cell_clip", 0.0)) != 0.0:
            r.append("cell_clip is not supported [C]")
        if float(o.get("proj_clip", 0.0)) != 0.0:
            r.append("proj_clip is not supported [C]")
    return r


def _c_mean(op, ctx):
    return _inputs_consts_outputs(op, 1, 1, 1) + _axes_int32_const(op, 1)


def _c_reduce(op, ctx):
    return _inputs_outputs(op, 1, 1) + _axes_int32_const(op, 1)


def _c_one_hot(op, ctx):
    """[C] CheckOneHotGpuDelegateCompatibility."""
    err = ["ONE_HOT: indices int32, on/off constant float scalars, axis -1 or last dim [C]"]
    if len(op.inputs) != 4 or any(t is None for t in op.inputs):
        return ["ONE_HOT expects 4 inputs and 1 output [C]"]
    idx, _, on, off = op.inputs
    if idx.dtype != "int32":
        return err
    axis = int(op.options.get("axis", -1))
    nd = idx.rank
    if axis != -1 and (nd == 0 or axis != idx.shape[nd - 1]):
        return err
    for i in range(nd - 1):
        if nd > 3 and i == 0:
            continue
        if idx.shape[i] != 1:
            return [f"ONE_HOT: unsupported non-singleton dim at {i} [C]"]
    for t in (on, off):
        if t.dtype != "float32" or not t.is_constant or t.rank > 1 or (t.rank == 1 and t.shape[0] > 1):
            return err
    return []


def _c_select(op, ctx):
    """[C] CheckSelectV2GpuDelegateCompatibility (LiteRT version)."""
    if len(op.inputs) != 3 or len(op.outputs) != 1 or any(t is None for t in op.inputs):
        return ["SELECT expects 3 inputs and 1 output [C]"]
    cond, a, b = op.inputs
    out = op.outputs[0].shape
    err = "SELECT: cond must be bool/float; if/else must have the output's shape or be scalar [C]"
    if cond.dtype not in ("bool", "float16", "float32"):
        return [err]
    r = []
    for name, t in (("if", a), ("else", b)):
        if t.rank and t.shape != out and (t.rank > 1 or t.shape[0] > 1):
            r.append(err)
        if t.is_constant and t.rank == 2:
            r.append(f"2-D constant {name} tensor is not supported [C]")
    return r


def _c_slice(op, ctx):
    if len(op.inputs) < 3:
        return [f"SLICE requires 3 inputs, node has {len(op.inputs)} [C]"]
    rank = len(_dims(op.inputs[0]))
    if rank not in (3, 4):
        return [f"SLICE supports 3-D or 4-D tensors only, input is {rank}-D [C]"]
    return []


def _c_softmax(op, ctx):
    beta = float(op.options.get("beta", 1.0))
    return [] if beta == 1.0 else [f"Softmax.beta != 1 is not supported (beta={beta}) [C]"]


def _c_strided_slice(op, ctx):
    o = op.options
    r = []
    for mask in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask"):
        if int(o.get(mask, 0)):
            r.append(f"STRIDED_SLICE does not support {mask} (= {int(o.get(mask))}) [C]")
    if len(op.inputs) < 4:
        return r + ["STRIDED_SLICE requires 4 inputs [C]"]
    rank = len(_dims(op.inputs[0]))
    if rank not in (3, 4):
        r.append(f"STRIDED_SLICE supports 3-D or 4-D input only, input is {rank}-D [C]")
    strides = op.inputs[3]
    if strides is not None and strides.const_value is not None and (strides.const_value < 0).any():
        r.append("reverse slices (negative strides) are not supported [P Parse]")
    return r


def _c_strided_slice_webgpu(op, ctx):
    """[M] As the classic check, but a 2-D input is accepted (measured; 1-D was not measured)."""
    rank = len(_dims(op.inputs[0])) if op.inputs else 0
    return [r for r in _c_strided_slice(op, ctx)
            if not (rank == 2 and r.startswith("STRIDED_SLICE supports 3-D or 4-D input only"))]


def _c_topk_const_k(op, ctx):
    """[M] TOPK_V2 with a constant k was accepted (values and int32 indices outputs)."""
    if len(op.inputs) < 2 or op.inputs[1] is None or not op.inputs[1].is_constant:
        return ["TOPK_V2 with a runtime k was not measured on the WebGPU accelerator [M]"]
    return []


def _c_float_weights(op, ctx):
    """[M] The int8 TRANSPOSE_CONV (v4) of the bundled int8 model was refused."""
    w = op.inputs[1] if len(op.inputs) > 1 else None
    if w is not None and w.dtype in ("int8", "uint8"):
        return [f"{op.name} with {w.dtype} weights is refused by the WebGPU accelerator [M]"]
    return []


def _c_resize_bilinear(op, ctx):
    o = op.options
    if o.get("align_corners") and o.get("half_pixel_centers"):
        return ["if half_pixel_centers is True, align_corners must be False [C]"]
    return []


def _c_pad(op, ctx):
    r = _inputs_outputs(op, 1, 1)
    if len(op.inputs) < 2 or op.inputs[1] is None:
        return r + ["paddings tensor missing [C]"]
    p = op.inputs[1].shape
    if len(p) != 2:
        r.append(f"invalid paddings tensor dimension: expected 2-D, got {len(p)}-D [C]")
    elif p[0] not in (3, 4) or p[1] != 2:
        r.append(f"invalid paddings tensor shape: expected 4x2 or 3x2, got {p[0]}x{p[1]} [C]")
    return r


def _c_mirror_pad_mode(op, ctx):
    mode = ctx.mirror_modes.get(int(op.options.get("mode", 0)), "REFLECT")
    return [] if mode == "REFLECT" else [f"only REFLECT mirror padding is supported, node has {mode} [C]"]


def _c_elementwise_1(op, ctx):
    return _inputs_consts_outputs(op, 1, 0, 1)


def _c_elementwise_2(op, ctx):
    a = _inputs_consts_outputs(op, 2, 0, 1)
    b = _inputs_consts_outputs(op, 1, 1, 1)
    if a and b:
        return [f"{op.name} can only handle 2 runtime inputs or 1 runtime + 1 constant input "
                f"(inputs constant={list(op.inputs_constant)}) [C]"]
    return []


def _c_logical_consumer(op, ctx):
    # [P] ElementwiseOperationParser::IsSupported for logical ops
    out = op.outputs[0] if op.outputs else None
    if out is None:
        return ["comparison without output [P]"]
    prods, cons = ctx.sg.producers(out.index), ctx.sg.consumers(out.index)
    if len(prods) != 1 or len(cons) != 1:
        return [f"{op.name}: bool output must feed exactly one op (has {len(cons)} consumers) [P]"]
    nxt = cons[0]
    dst = nxt.outputs[0].dtype if nxt.outputs else None
    if nxt.name in ("CAST", "SELECT", "SELECT_V2") and dst in ("float16", "float32"):
        return []
    return [f"{op.name}: bool output must feed a CAST/SELECT producing float, feeds {nxt.name} [P]"]


_CHECKS: dict[str, Callable[[OpInfo, _Ctx], list[str]]] = {
    name[3:]: fn for name, fn in list(globals().items()) if name.startswith("_c_") and callable(fn)
}


# --------------------------------------------------------------------------- main entry


def _tensor_rule_reasons(op: OpInfo, allow_quant: bool, backend: str = "classic") -> list[str]:
    """[P] GetOpsToReplace / IsAllAllowedTensors."""
    r = []
    base = BASE_TYPES | (QUANT_TYPES if allow_quant else frozenset())
    extra_in, extra_out = dict(EXTRA_INPUT_TYPES), dict(EXTRA_OUTPUT_TYPES)
    if backend == "webgpu":
        extra_in.update(WEBGPU_EXTRA_INPUT_TYPES)
        extra_out.update(WEBGPU_EXTRA_OUTPUT_TYPES)
    ok_in = base | extra_in.get(op.name, frozenset()) if not op.is_custom else base
    ok_out = base | extra_out.get(op.name, frozenset()) if not op.is_custom else base
    for kind, tensors, allowed in (("input", op.inputs, ok_in), ("output", op.outputs, ok_out)):
        for i, t in enumerate(tensors):
            if t is None:
                continue
            if t.rank > MAX_RANK:
                r.append(f"{kind} {i} '{t.name}' is {t.rank}-D {list(t.shape)}; the delegate takes "
                         f"tensors of rank <= {MAX_RANK} only [P IsAllAllowedTensors]")
            if not t.is_constant and not t.is_variable and t.dtype not in allowed:
                extra = " (int64 is never delegated)" if t.dtype == "int64" else ""
                r.append(f"runtime {kind} {i} '{t.name}' has type {t.dtype}{extra}; allowed here: "
                         f"{sorted(allowed)} [P GetOpsToReplace]")
    return r


def _check_op(op: OpInfo, ctx: _Ctx) -> tuple[list[str], list[str]]:
    """Return (reasons it is rejected, notes)."""
    notes: list[str] = []
    if op.is_custom:
        if op.is_flex:
            return ([f"Flex (SELECT_TF_OPS) op '{op.name}': no GPU parser; it also needs the Flex "
                     f"delegate, which the project does not allow [P]"], notes)
        rule = CUSTOM_OP_RULES.get(op.name)
        if rule is None:
            return ([f"custom op '{op.name}' has no GPU parser (NewCustomOperationParser -> "
                     f"UnimplementedOperationParser) [P]"], notes)
    else:
        if _is_fp16_weight_dequantize(op):
            return [], notes
        rule = (WEBGPU_OP_RULES if ctx.backend == "webgpu" else OP_RULES).get(op.name)
        if rule is None:
            return ([f"{op.name} is not in the GPU delegate's supported op set ('Operation is "
                     f"not supported.') [P NewOperationParser]"], notes)
        if rule.quant_only and not ctx.allow_quant:
            return ([f"{op.name} is only delegated with quantized ops allowed (ENABLE_QUANT) [P]"], notes)
        if (op.name not in DOCUMENTED_OPS and op.name not in ("DEQUANTIZE", "QUANTIZE")
                and not (ctx.backend == "webgpu" and op.name not in OP_RULES)):
            notes.append(f"{op.name} is supported by the delegate source [P] but not listed on the docs page [W]")
    reasons: list[str] = []
    if _is_fp16_weight_dequantize(op):
        # [P] FP16 weights: DEQUANTIZE of a constant fp16 tensor is folded by the delegate
        # (FP16GraphPartitionHelper / BuildModelEnforceIO skip these nodes), with or
        # without ENABLE_QUANT.
        return [], notes
    if rule.max_version is not None and op.version > rule.max_version:
        reasons.append(f"op version {op.version} > max supported version {rule.max_version} "
                       f"[P CheckMaxSupportedOpVersion]")
    for check in rule.checks:
        reasons += _CHECKS[check](op, ctx)
    reasons += _tensor_rule_reasons(op, ctx.allow_quant, ctx.backend)
    # de-duplicate, keep order
    seen, out = set(), []
    for r in reasons:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out, notes


def _is_fp16_weight_dequantize(op: OpInfo) -> bool:
    return (op.name == "DEQUANTIZE" and len(op.inputs) == 1 and op.inputs[0] is not None
            and op.inputs[0].is_constant and op.inputs[0].dtype == "float16")


def _fp16_dequantized_constants(sg: SubgraphInfo) -> set[int]:
    """Outputs of DEQUANTIZE(constant float16) nodes (float16-quantized weights).

    [P] + delegates/utils.cc ``FP16GraphPartitionHelper``: these DEQUANTIZE nodes are
    absorbed and their consumers read the fp16 constant directly, so for the consumers the
    dequantized tensor is a constant (a CONV_2D on fp16 weights has 1 runtime input).
    """
    return {op.outputs[0].index for op in sg.ops if _is_fp16_weight_dequantize(op) and op.outputs}


def _with_constants(op: OpInfo, const_ids: set[int]) -> OpInfo:
    if not any(t is not None and t.index in const_ids for t in op.inputs):
        return op
    ins = tuple(
        replace(t, is_constant=True) if (t is not None and t.index in const_ids) else t
        for t in op.inputs
    )
    return replace(op, inputs=ins)


def check_gpu_compatibility(path_or_info, allow_quant_ops: bool = True,
                            backend: str = "classic") -> GpuReport:
    """Check a .tflite file (path/bytes) or a :class:`ModelInfo` against GPU rules.

    allow_quant_ops: mirror ``TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT`` (default on, as in
    ``TfLiteGpuDelegateOptionsV2Default()`` and the Android API).
    backend: "classic" (the OpenCL/GL GPU delegate's rules, default) or "webgpu" (LiteRT's
    WebGPU accelerator: the classic rules with the measured differences, [M]). A static
    estimate either way: executing the model on the accelerator is the check that counts.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    info = path_or_info if isinstance(path_or_info, ModelInfo) else load_model_info(path_or_info)
    s = schema()

    def names(enum_name):
        cls = getattr(s, enum_name, None)
        return {} if cls is None else {v: k for k, v in vars(cls).items() if not k.startswith("_")}

    enums = dict(
        act_names=names("ActivationFunctionType"),
        mirror_modes=names("MirrorPadMode"),
        lstm_kernels=names("LSTMKernelType"),
        fc_formats=names("FullyConnectedOptionsWeightsFormat"),
    )

    model_issues: list[str] = []
    notes: list[str] = []
    dyn_inputs = [t for t in info.inputs if t.is_dynamic]
    if dyn_inputs:
        model_issues.append(
            "dynamic input shape(s): "
            + ", ".join(f"'{t.name}' signature {list(t.shape_signature)}" for t in dyn_inputs)
            + ". The GPU delegate does not set kTfLiteDelegateFlagsAllowDynamicTensors and builds "
            "its kernels for the shapes present when it is applied [D]; rebuild/convert with a "
            "fixed batch size of 1"
        )
    dyn_other = [t for sg in info.subgraphs for t in sg.tensors if t.is_dynamic and t not in dyn_inputs]
    if dyn_other:
        notes.append(f"{len(dyn_other)} non-input tensor(s) have -1 in shape_signature")
    if len(info.subgraphs) > 1:
        notes.append(f"model has {len(info.subgraphs)} subgraphs; control flow ops run on the CPU")

    const_int64 = sorted({t.name for sg in info.subgraphs for t in sg.tensors
                          if t.dtype == "int64" and t.is_constant})
    if const_int64:
        notes.append("constant int64 tensors present (only runtime int64 tensors are rejected "
                     "outright; ops needing int32 axes/indices flag them): " + ", ".join(const_int64[:5]))

    bad: list[IncompatibleOp] = []
    n_ops = 0
    for sg in info.subgraphs:
        ctx = _Ctx(sg=sg, allow_quant=allow_quant_ops, backend=backend, **enums)
        fp16_consts = _fp16_dequantized_constants(sg)
        for op in sg.ops:
            if fp16_consts:
                op = _with_constants(op, fp16_consts)
            n_ops += 1
            reasons, op_notes = _check_op(op, ctx)
            for n in op_notes:
                if n not in notes:
                    notes.append(n)
            if reasons:
                bad.append(IncompatibleOp(op.subgraph, op.index, op.name, op.version,
                                          tuple(reasons), op.describe()))
    return GpuReport(
        compatible=not bad and not model_issues,
        incompatible_ops=bad,
        model_issues=model_issues,
        notes=notes,
        n_ops=n_ops,
        n_ops_supported=n_ops - len(bad),
        allow_quant_ops=allow_quant_ops,
        path=info.path,
        backend=backend,
        rules_version=RULES_VERSION if backend == "classic" else WEBGPU_RULES_VERSION,
    )


def check_all_backends(path_or_info, allow_quant_ops: bool = True) -> dict[str, GpuReport]:
    """``{backend: GpuReport}`` for every backend in ``BACKENDS`` (classic first)."""
    info = path_or_info if isinstance(path_or_info, ModelInfo) else load_model_info(path_or_info)
    return {b: check_gpu_compatibility(info, allow_quant_ops, backend=b) for b in BACKENDS}
