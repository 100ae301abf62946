"""Small, exact rewrites of a float ``.tflite`` flatbuffer for the GPU delegate (no TensorFlow).

``unfuse_transpose_conv_activation``: the converter fuses a ReLU that follows a transposed
convolution into TRANSPOSE_CONV (``fused_activation_function``), which bumps the op to version
4. The LiteRT GPU delegate accepts TRANSPOSE_CONV only up to version 3
(``TransposeConvBuiltinOperationParser::IsSupported``: ``CheckMaxSupportedOpVersion(.., 3)``),
so one fused ReLU pushes the whole model off the GPU. Splitting it back into TRANSPOSE_CONV
(no activation) + RELU computes the same numbers with ops the delegate takes.

The fusion only happens when the transposed conv has a bias input, i.e. for trained weights:
a freshly initialised model (zero bias) converts to TRANSPOSE_CONV v1 + RELU.

Float models only: in an int8 graph the pre-activation tensor would need its own
quantization parameters, which the file does not hold.
"""

import flatbuffers

from keras_dehaze.edge import flatbuffer

_FILE_IDENTIFIER = b"TFL3"


def _load(blob):
    s = flatbuffer.schema()
    return s, s.ModelT.InitFromPackedBuf(bytearray(blob), 0)


def _save(s, model):
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())


def _opcode_index(s, model, builtin):
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode or 0, code.deprecatedBuiltinCode or 0) == builtin and not code.customCode:
            return i
    code = s.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def unfuse_transpose_conv_activation(blob):
    """Splits every float TRANSPOSE_CONV with a fused RELU/RELU6/RELU_N1_TO_1 into two ops.

    Args:
        blob: bytes of a ``.tflite`` model.

    Returns:
        (new bytes, number of ops split). The input is returned unchanged when nothing applies.
    """
    s, model = _load(blob)
    tconv = s.BuiltinOperator.TRANSPOSE_CONV
    act = s.ActivationFunctionType
    activation_ops = {act.RELU: s.BuiltinOperator.RELU, act.RELU6: s.BuiltinOperator.RELU6,
                      act.RELU_N1_TO_1: s.BuiltinOperator.RELU_N1_TO_1}
    float_types = {s.TensorType.FLOAT32, s.TensorType.FLOAT16}
    tconv_codes = {i for i, c in enumerate(model.operatorCodes)
                   if max(c.builtinCode or 0, c.deprecatedBuiltinCode or 0) == tconv}
    split = 0
    for sg in model.subgraphs or []:
        operators = []
        for op in sg.operators or []:
            operators.append(op)
            options = op.builtinOptions
            fused = getattr(options, "fusedActivationFunction", act.NONE)
            out = sg.tensors[op.outputs[0]] if op.outputs is not None and len(op.outputs) else None
            if op.opcodeIndex not in tconv_codes or fused not in activation_ops or out is None \
                    or out.type not in float_types:
                continue
            pre = s.TensorT()  # the transposed conv's output before the activation
            pre.shape, pre.type, pre.shapeSignature = out.shape, out.type, out.shapeSignature
            pre.name = (out.name or b"tconv") + b"/pre_activation"
            model.buffers.append(s.BufferT())
            pre.buffer = len(model.buffers) - 1
            sg.tensors.append(pre)
            pre_index = len(sg.tensors) - 1
            relu = s.OperatorT()
            relu.opcodeIndex = _opcode_index(s, model, activation_ops[fused])
            relu.inputs, relu.outputs = [pre_index], [op.outputs[0]]
            op.outputs = [pre_index]
            options.fusedActivationFunction = act.NONE
            operators.append(relu)
            split += 1
        sg.operators = operators
    if not split:
        return blob, 0
    # Op version after the split (TFLite op_version.cc): 3 with a bias input, 2 for int8
    # weights, else 1; the opcode entry is shared by all TRANSPOSE_CONV ops.
    version = 1
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.opcodeIndex in tconv_codes:
                has_bias = op.inputs is not None and len(op.inputs) > 3 and op.inputs[3] >= 0
                still_fused = getattr(op.builtinOptions, "fusedActivationFunction", act.NONE) != act.NONE
                version = max(version, 4 if still_fused else 3 if has_bias else 1)
    for i in tconv_codes:
        model.operatorCodes[i].version = version
    return _save(s, model), split


__all__ = ["unfuse_transpose_conv_activation"]
