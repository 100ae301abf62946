"""Quantization-aware training (QAT) support: QuantizeConfigs for the custom layers, and helpers.

tensorflow-model-optimization only knows built-in Keras layers. Each custom layer here gets a
``QuantizeConfig`` saying which (possibly nested) kernels to fake-quantize, which nested
activations to quantize and whether to quantize the output, so that
``tfmot.quantization.keras.quantize_apply`` simulates the int8 TFLite graph while training.

Facts this module is built on (measured; docs/deployment.md):

* ``quantize_apply`` only takes Functional/Sequential models: AE-CR-Net is Functional.
* Saving a whole QAT model fails; ``save_weights``/``load_weights`` works. Keep the float
  checkpoint as the source of truth and rebuild the QAT model from code.
* Rebuild with batch size 1 and a fixed size before TFLite conversion (``rebuild_fixed``).

Usage::

    qat = quantize_aware(rebuild_fixed(float_model, 64, 64, batch_size=None))
    calibrate_ranges(qat, hazy_batches)     # ranges from data, not tfmot's [-6, 6]
    qat.compile(...); qat.fit(...)
    qat.save_weights("qat.weights.h5")
    export = quantize_aware(rebuild_fixed(float_model, 256, 256, batch_size=1, index_math="int"))
    export.set_weights(qat.get_weights())   # then keras_dehaze.edge.export converts it
"""

import re

from keras_dehaze.backend import keras, register, tf  # sets TF_USE_LEGACY_KERAS before tfmot
from keras_dehaze.layers import (
    AdaptiveMixup,
    ClipAtInference,
    CropLike,
    DeformableConv2D,
    FABlock,
    PadToMultiple,
    ReflectionPad2D,
)

import tensorflow_model_optimization as tfmot  # noqa: E402  (after the backend import)

# QuantizeLayer (the model-input quantizer) is not exported publicly; used only for isinstance.
from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import (  # noqa: E402
    QuantizeLayer as _QuantizeLayer,
)

_quantizers = tfmot.quantization.keras.quantizers
QuantizeConfig = tfmot.quantization.keras.QuantizeConfig


# ----------------------------------------------------------------------------- quantizers


def _conv_kernel_quantizer():
    """Per-output-channel symmetric int8, the scheme TFLite uses for conv weights."""
    return _quantizers.LastValueQuantizer(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)


def _activation_quantizer():
    """Asymmetric per-tensor int8 with moving-average ranges (tfmot's default for activations)."""
    return _quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


class _Prefixed(_quantizers.Quantizer):
    """Gives the min/max variables of a quantizer a unique name prefix.

    The wrapper names them after the weight ("kernel_min") or "post_activation_min": two nested
    kernels or activations of one custom layer would get the same variable name in one layer,
    which makes checkpoints and debugging ambiguous ("offset_conv_kernel_min" is not).
    """

    def __init__(self, quantizer, prefix):
        self.quantizer = quantizer
        self.prefix = prefix

    def build(self, tensor_shape, name, layer):
        name = f"{self.prefix}_{name}" if self.prefix else name
        return self.quantizer.build(tensor_shape, name, layer)

    def __call__(self, inputs, training, weights, **kwargs):
        return self.quantizer(inputs, training, weights, **kwargs)

    def get_config(self):
        return {"prefix": self.prefix}


class _AsConv1x1(_quantizers.Quantizer):
    """Per-output-channel kernel quantizer applied to the kernel reshaped to [1, 1, k*k*C, F].

    DeformableConv2D reshapes its [k, k, C, F] kernel to a 1x1 conv kernel. A per-channel
    FakeQuant placed BEFORE that reshape makes the TFLite converter fail (it cannot carry the
    per-axis parameters through RESHAPE; it reports a misleading "Could not find SavedModel"
    error). Quantizing in the 1x1 shape and reshaping back lets the two reshapes cancel, so the
    FakeQuant sits right on the CONV_2D weight.
    """

    def __init__(self, quantizer):
        self.quantizer = quantizer

    def build(self, tensor_shape, name, layer):
        return self.quantizer.build(tensor_shape, name, layer)  # ranges: one per output channel

    def __call__(self, inputs, training, weights, **kwargs):
        shape = tf.shape(inputs)
        flat = tf.reshape(inputs, [1, 1, -1, inputs.shape[-1]])
        return tf.reshape(self.quantizer(flat, training, weights, **kwargs), shape)

    def get_config(self):
        return {}


def _resolve(layer, path):
    """('offset_conv.kernel') -> (layer.offset_conv, 'kernel')."""
    *parents, attr = path.split(".")
    for name in parents:
        layer = getattr(layer, name)
    return layer, attr


# ----------------------------------------------------------------------------- configs


class NestedQuantizeConfig(QuantizeConfig):
    """Quantizes kernels and activations found at dotted attribute paths, plus the output.

    Subclasses list ``WEIGHTS`` (e.g. ``"offset_conv.kernel"``) and ``ACTIVATIONS`` (e.g.
    ``"conv1.activation"``, a Keras activation function of a nested layer) and set
    ``QUANTIZE_OUTPUT``. The wrapper replaces each weight by its fake-quantized value before
    calling the layer, so convs nested inside a custom layer see quantized kernels.
    """

    WEIGHTS = ()
    ACTIVATIONS = ()
    QUANTIZE_OUTPUT = True

    def get_weights_and_quantizers(self, layer):
        return [
            (getattr(*_resolve(layer, path)), _Prefixed(_conv_kernel_quantizer(), _prefix(path)))
            for path in self.WEIGHTS
        ]

    def get_activations_and_quantizers(self, layer):
        return [
            (getattr(*_resolve(layer, path)), _Prefixed(_activation_quantizer(), _prefix(path)))
            for path in self.ACTIVATIONS
        ]

    def set_quantize_weights(self, layer, quantize_weights):
        for path, weight in zip(self.WEIGHTS, quantize_weights, strict=True):
            setattr(*_resolve(layer, path), weight)

    def set_quantize_activations(self, layer, quantize_activations):
        for path, activation in zip(self.ACTIVATIONS, quantize_activations, strict=True):
            setattr(*_resolve(layer, path), activation)

    def get_output_quantizers(self, layer):
        return [_activation_quantizer()] if self.QUANTIZE_OUTPUT else []

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))


def _prefix(path):
    """'offset_conv.kernel' -> 'offset_conv', 'a.b.activation' -> 'a_b'; '' for own weights."""
    return re.sub(r"\W", "_", path.rsplit(".", 1)[0]) if "." in path else ""


@register
class DeformableConv2DQuantizeConfig(NestedQuantizeConfig):
    """DCN: its kernel, the nested offset/mask conv kernel, and the output.

    The offsets/mask and the sampled columns are left to the converter's calibration: the
    index arithmetic is int32 (``index_math="int"``), which full-integer quantization leaves
    alone, and fake-quantizing the offsets would only add noise to the sampling positions.
    """

    WEIGHTS = ("kernel", "offset_conv.kernel")

    def get_weights_and_quantizers(self, layer):
        (kernel, quantizer), *rest = super().get_weights_and_quantizers(layer)
        return [(kernel, _AsConv1x1(quantizer)), *rest]


@register
class FABlockQuantizeConfig(NestedQuantizeConfig):
    """FA block: the six nested conv kernels, their activations, and the block output.

    ReLU/linear outputs are quantized after the activation and sigmoid inputs before it
    (tfmot's rule: TFLite's int8 LOGISTIC has a fixed output scale). The two Multiply outputs
    inside the block are calibrated by the converter.
    """

    _CONVS = ("conv1", "conv2", "ca_down", "ca_up", "pa_down", "pa_up")
    WEIGHTS = tuple(f"{c}.kernel" for c in _CONVS)
    ACTIVATIONS = tuple(f"{c}.activation" for c in _CONVS)


@register
class OutputQuantizeConfig(NestedQuantizeConfig):
    """No weights; quantizes the output (AdaptiveMixup, Multiply).

    AdaptiveMixup's scalar ``w`` is not quantized: sigmoid(w) is folded into a constant by the
    converter and quantized there.
    """


@register
class UnitRangeOutputQuantizeConfig(NestedQuantizeConfig):
    """ClipAtInference: the output is an image in [0, 1], so its int8 range is fixed to [0, 1].

    This gives the model output the finest int8 step (1/255). In training the layer is the
    identity and the fixed fake-quant clamps to [0, 1] (no gradient outside), which is what
    the int8 model will do anyway.
    """

    def get_output_quantizers(self, layer):
        return [_quantizers.FixedQuantizer(num_bits=8, init_min=0.0, init_max=1.0, narrow_range=False)]


@register
class PassThroughQuantizeConfig(NestedQuantizeConfig):
    """Nothing to quantize: padding and cropping keep the input's int8 scale (PAD, MIRROR_PAD,
    STRIDED_SLICE run on int8 with unchanged quantization parameters)."""

    QUANTIZE_OUTPUT = False


# Layer class -> config for every layer tfmot's default registry does not cover.
CUSTOM_CONFIGS = {
    DeformableConv2D: DeformableConv2DQuantizeConfig,
    FABlock: FABlockQuantizeConfig,
    AdaptiveMixup: OutputQuantizeConfig,
    ClipAtInference: UnitRangeOutputQuantizeConfig,
    keras.layers.Multiply: OutputQuantizeConfig,
    ReflectionPad2D: PassThroughQuantizeConfig,
    PadToMultiple: PassThroughQuantizeConfig,
    CropLike: PassThroughQuantizeConfig,
}


def quantize_scope():
    """``tfmot`` scope that knows our configs and layers (needed to clone/deserialize)."""
    objects = {cls.__name__: cls for cls in set(CUSTOM_CONFIGS.values())}
    objects.update({cls.__name__: cls for cls in CUSTOM_CONFIGS if cls.__module__.startswith("keras_dehaze")})
    return tfmot.quantization.keras.quantize_scope(objects)


def quantize_config_for(layer):
    """The QuantizeConfig instance for a custom layer, or None for tfmot's built-in handling."""
    for cls, config in CUSTOM_CONFIGS.items():
        if type(layer) is cls:
            return config()
    return None


def quantize_aware(model):
    """Returns the quantization-aware (fake-quantized) version of a Functional float model.

    Every layer is annotated (custom ones with their config from ``CUSTOM_CONFIGS``); tfmot's
    default 8-bit scheme handles the built-in layers. The float weights are copied, so QAT
    fine-tunes from the trained model. Save the result with ``save_weights`` only.
    """
    if not isinstance(model, keras.Model) or not getattr(model, "_is_graph_network", False):
        raise ValueError("quantize_aware needs a Functional (or Sequential) keras.Model; "
                         f"got {type(model).__name__}. Build networks as Functional graphs.")

    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def _annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        config = quantize_config_for(layer)
        if config is None and type(layer).__module__.startswith("keras_dehaze"):
            raise ValueError(f"No QuantizeConfig for custom layer {type(layer).__name__} "
                             f"({layer.name}); add one to keras_dehaze.edge.quantization.CUSTOM_CONFIGS.")
        return annotate(layer, quantize_config=config)

    with quantize_scope():
        annotated = keras.models.clone_model(model, clone_function=_annotate)
        annotated.set_weights(model.get_weights())
        return tfmot.quantization.keras.quantize_apply(annotated)


# ----------------------------------------------------------------------------- ranges


def _base(quantizer):
    while isinstance(quantizer, (_Prefixed, _AsConv1x1)):
        quantizer = quantizer.quantizer
    return quantizer


_BIG = 3.0e38
_MIN_WIDTH = 0.01  # narrowest calibrated activation range
_RANGE_LEARNING = (_quantizers.MovingAverageQuantizer, _quantizers.AllValuesQuantizer)


class _MinMaxRecorder(_quantizers.Quantizer):
    """Stands in for an activation quantizer during calibration: passes values through
    unquantized (as post-training calibration does) and widens the range variables to the
    min/max seen (always including 0, as TFLite requires)."""

    def build(self, tensor_shape, name, layer):  # pragma: no cover - never built
        raise NotImplementedError

    def __call__(self, inputs, training, weights, **kwargs):
        lo = tf.minimum(tf.reduce_min(inputs), 0.0)
        hi = tf.maximum(tf.reduce_max(inputs), 0.0)
        weights["min_var"].assign(tf.minimum(weights["min_var"], lo))
        weights["max_var"].assign(tf.maximum(weights["max_var"], hi))
        return tf.identity(inputs)

    def get_config(self):
        return {}


def _activation_slots(model):
    """(container, key, range variables) of every range-learning activation quantizer."""
    for layer in model.layers:
        if isinstance(layer, _QuantizeLayer) and layer.quantizer is not None:
            yield layer.__dict__, "quantizer", [layer.quantizer_vars]
        if not isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
            continue
        for i, _ in enumerate(layer._output_quantizers):
            yield layer._output_quantizers, i, [layer._output_quantizer_vars]
        for activation in layer._quantize_activations:
            ranges = [getattr(activation, a) for a in ("_pre_activation_vars", "_post_activation_vars")
                      if hasattr(activation, a)]
            yield activation.__dict__, "quantizer", ranges


def refresh_weight_ranges(qat_model):
    """Sets every weight quantizer's stored range to the current weights' min/max.

    Inference (and the TFLite converter) uses the stored ranges; they are only updated by a
    training-mode forward pass, so they are stale after the last optimizer step (or still the
    initial [-6, 6] if the model was never trained).
    """
    for layer in qat_model.layers:
        if isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
            for weight, quantizer, ranges in layer._weight_vars:
                quantizer(weight, True, weights=ranges)  # LastValueQuantizer assigns in training


def calibrate_ranges(qat_model, batches):
    """Initialises the activation ranges of a QAT model from data (min/max), and the weights'.

    tfmot starts every activation range at [-6, 6] and moves it with an EMA of decay 0.999,
    so a short QAT fine-tune (hundreds of steps) would keep ranges ~10x too wide and the int8
    model would lose most of its resolution. This runs the model in inference mode over
    ``batches`` (arrays or tensors [B, H, W, C]) with every range-learning activation quantizer
    replaced by a min/max recorder, like post-training calibration; QAT then continues from
    these ranges. Fixed ranges (FixedQuantizer) are left alone.
    """
    batches = [tf.convert_to_tensor(x, tf.float32) for x in batches]
    if not batches:
        raise ValueError("calibrate_ranges: no batches")
    refresh_weight_ranges(qat_model)
    slots = [(c, k, r) for c, k, r in _activation_slots(qat_model)
             if isinstance(_base(c[k]), _RANGE_LEARNING)]
    saved = [c[k] for c, k, _ in slots]
    for container, key, ranges in slots:
        container[key] = _MinMaxRecorder()
        for r in ranges:  # empty range: the first batch sets it
            r["min_var"].assign(tf.fill(tf.shape(r["min_var"]), _BIG))
            r["max_var"].assign(tf.fill(tf.shape(r["max_var"]), -_BIG))

    @tf.function
    def run(x):
        return qat_model(x, training=False)

    try:
        for x in batches:
            run(x)
    finally:
        for (container, key, _), quantizer in zip(slots, saved):
            container[key] = quantizer
    for _, _, ranges in slots:
        for r in ranges:
            # A (near) constant tensor, e.g. a dead ReLU bottleneck, would get an int8 scale of
            # ~1e-8; XNNPACK then refuses the next conv (input*filter/output scale must be < 256).
            r["max_var"].assign(tf.maximum(r["max_var"], r["min_var"] + _MIN_WIDTH))
    return len(slots)


# ----------------------------------------------------------------------------- rebuilding

_BUILDER_ALIASES = {"dcn_index_math": "index_math", "dcn_sampler": "sampler"}


def rebuild_fixed(model, height, width, batch_size=1, **overrides):
    """Rebuilds a Functional float model with a fixed input size and batch, copying weights.

    A fixed batch-1 size is what TFLite export needs (a dynamic batch leaves SHAPE and
    STRIDED_SLICE ops the GPU delegate rejects). ``overrides`` set a key in the config of every
    layer that has it, e.g. ``index_math="float"`` (alias ``dcn_index_math``) switches the
    DCN's index arithmetic without touching the weights.

    Args:
        model: a Functional ``keras.Model`` (e.g. loaded from a ``.keras`` checkpoint).
        height, width: the input size; ``None`` keeps it dynamic.
        batch_size: fixed batch (1 for export) or ``None``.
        **overrides: layer-config keys and values.

    Returns:
        A new model with the same weights.

    Raises:
        ValueError: an override key exists in no layer's config.
    """
    config = model.get_config()
    overrides = {_BUILDER_ALIASES.get(k, k): v for k, v in overrides.items()}
    used = set()
    for layer in config["layers"]:
        cfg = layer["config"]
        if layer["class_name"] == "InputLayer":
            shape = list(cfg["batch_input_shape"])
            cfg["batch_input_shape"] = [batch_size, height, width, *shape[3:]]
            continue
        for key, value in overrides.items():
            if key in cfg:
                cfg[key] = value
                used.add(key)
    unused = set(overrides) - used
    if unused:
        raise ValueError(f"rebuild_fixed: no layer of {model.name!r} has config key(s) {sorted(unused)}")
    rebuilt = keras.Model.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


__all__ = [
    "CUSTOM_CONFIGS",
    "DeformableConv2DQuantizeConfig",
    "FABlockQuantizeConfig",
    "NestedQuantizeConfig",
    "UnitRangeOutputQuantizeConfig",
    "calibrate_ranges",
    "refresh_weight_ranges",
    "OutputQuantizeConfig",
    "PassThroughQuantizeConfig",
    "quantize_aware",
    "quantize_config_for",
    "quantize_scope",
    "rebuild_fixed",
]
