"""LKD-Net: a compact large-kernel dehazing U-Net (Luo et al., ICME 2023), as a Functional model.

Layer names follow the official checkpoint keys with "." -> "_" (``layer1.blocks.0.DWConv`` is
the layer ``layer1_blocks_0_DWConv``), so ``keras_dehaze.zoo.lkdnet_weights`` maps every key to
one layer by name. Two reference modules are split in two so the graph needs no channel
slicing: the 2C-channel SKFusion logits (``fusion*_mlp_2_x`` / ``_skip``) and the 4-channel
output conv (``patch_unembed_k`` / ``patch_unembed_b``). Parameter counts are unchanged.
"""

from keras_dehaze.backend import keras
from keras_dehaze.layers import (
    ChannelScale,
    ClipAtInference,
    CropLike,
    DepthToSpace,
    ImageLayerNorm,
    PadToMultiple,
    ReflectionPad2D,
)

VARIANTS = {  # depths of layer1..layer5; widths are always WIDTHS
    "t": (1, 1, 2, 1, 1),
    "s": (2, 2, 4, 2, 2),
    "b": (4, 4, 8, 4, 4),
    "l": (8, 8, 16, 8, 8),
}
WIDTHS = (24, 48, 96, 48, 24)
MLP_RATIO = 4
STRIDE = 4
MIN_SIZE = 40  # the 7x7 dilation-3 conv reflects 9 pixels at 1/4 resolution: needs >= 10


def LKDNet(variant="s", batchnorm_trainable=True, batchnorm=True, input_shape=(None, None, 3), batch_size=None,
           name=None):
    """Builds LKD-Net mapping RGB in [0, 1] to RGB in [0, 1].

    Inside: x = 2 * input - 1; patch embed; five stages of LKD blocks (24, 48, 96, 48, 24
    channels at full, 1/2, 1/4, 1/2, full resolution) with two stride-2 patch merges, two
    PixelShuffle patch splits and SK fusions of the skips; a 3x3 conv gives K (1 channel) and
    B (3 channels); y = K * x - B + x; output y * 0.5 + 0.5, clipped to [0, 1] at inference.
    Any input size: reflect-padded at the bottom/right to a multiple of 4 (and to at least 40
    pixels a side, where the reference would fail) and cropped back.

    Args:
        variant: "t", "s", "b" or "l" (block depths 1-1-2-1-1, 2-2-4-2-2, 4-4-8-4-4, 8-8-16-8-8;
            LKD-T has 344,182 and LKD-S 636,208 trainable parameters).
        batchnorm_trainable: False freezes the BatchNorm layers (statistics and affine), so
            fine-tuning with small batches keeps the pretrained statistics.
        batchnorm: False builds the inference graph without BatchNorm layers, whose affine maps
            are folded into the 1x1 convs that read them (``fold_batchnorm``; for export).
        input_shape, batch_size: fix them (e.g. (256, 256, 3), 1) for a TFLite export.
        name: model name (default ``lkdnet_<variant>``).

    Returns:
        A ``keras.Model``.

    Reference:
        Luo et al., "LKD-Net: Large Kernel Convolution Network for Single Image Dehazing",
        ICME 2023; github.com/SWU-CS-MediaLab/LKD-Net (models/LKD.py).
    """
    variant = str(variant).lower()
    if variant not in VARIANTS:
        raise ValueError(f"unknown LKD-Net variant {variant!r}; known: {sorted(VARIANTS)}")
    depths = VARIANTS[variant]
    bn = (bool(batchnorm_trainable) if batchnorm else None)  # None: no BatchNorm layers (folded)
    stage = lambda x, name, dim, depth: _stage(x, name, dim, depth, bn)  # noqa: E731
    conv = keras.layers.Conv2D

    inputs = keras.Input(shape=input_shape, batch_size=batch_size, name="hazy")
    padded = PadToMultiple(STRIDE, min_size=MIN_SIZE, name="pad_to_multiple")(inputs)
    x_in = keras.layers.Rescaling(2.0, offset=-1.0, name="to_signed")(padded)

    x = conv(WIDTHS[0], 3, name="patch_embed_proj")(ReflectionPad2D(1, name="patch_embed_pad")(x_in))
    x = stage(x, "layer1", WIDTHS[0], depths[0])
    skip1 = x
    x = conv(WIDTHS[1], 2, strides=2, name="patch_merge1_proj")(x)
    x = stage(x, "layer2", WIDTHS[1], depths[1])
    skip2 = x
    x = conv(WIDTHS[2], 2, strides=2, name="patch_merge2_proj")(x)
    x = stage(x, "layer3", WIDTHS[2], depths[2])
    x = DepthToSpace(2, name="patch_split1_shuffle")(conv(WIDTHS[3] * 4, 1, name="patch_split1_proj_0")(x))
    x = keras.layers.Add(name="fusion1_residual")([_sk_fusion(x, conv(WIDTHS[1], 1, name="skip2")(skip2), "fusion1"), x])
    x = stage(x, "layer4", WIDTHS[3], depths[3])
    x = DepthToSpace(2, name="patch_split2_shuffle")(conv(WIDTHS[4] * 4, 1, name="patch_split2_proj_0")(x))
    x = keras.layers.Add(name="fusion2_residual")([_sk_fusion(x, conv(WIDTHS[0], 1, name="skip1")(skip1), "fusion2"), x])
    x = stage(x, "layer5", WIDTHS[4], depths[4])

    x = ReflectionPad2D(1, name="patch_unembed_pad")(x)
    k = conv(1, 3, name="patch_unembed_k")(x)
    b = conv(3, 3, name="patch_unembed_b")(x)
    y = keras.layers.Multiply(name="k_times_x")([k, x_in])
    y = keras.layers.Subtract(name="minus_b")([y, b])
    y = keras.layers.Add(name="plus_x")([y, x_in])
    y = keras.layers.Rescaling(0.5, offset=0.5, name="to_unit")(y)
    y = CropLike(name="crop")([y, inputs])
    outputs = ClipAtInference(name="clip")(y)
    return keras.Model(inputs, outputs, name=name or f"lkdnet_{variant}")


def _stage(x, name, dim, depth, bn_trainable):
    for i in range(depth):
        x = _lkd_block(x, f"{name}_blocks_{i}", dim, bn_trainable)
    return x


def _lkd_block(x, name, dim, bn_trainable):
    """Decomposed large-kernel conv (5x5 dw + 7x7 dilation-3 dw) and CEFN, both residual."""
    def bn(n):
        if bn_trainable is None:  # folded into the following 1x1 convs
            return lambda t: t
        return keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, trainable=bn_trainable, name=f"{name}_{n}")

    y = keras.layers.Conv2D(dim, 1, name=f"{name}_Linear1")(bn("norm1")(x))
    y = keras.layers.DepthwiseConv2D(5, name=f"{name}_DWConv")(ReflectionPad2D(2, name=f"{name}_DWConv_pad")(y))
    y = keras.layers.DepthwiseConv2D(7, dilation_rate=3, name=f"{name}_DWDConv")(
        ReflectionPad2D(9, name=f"{name}_DWDConv_pad")(y))
    y = keras.layers.Conv2D(dim, 1, name=f"{name}_Linear2")(y)
    x = keras.layers.Add(name=f"{name}_add1")([y, x])
    return keras.layers.Add(name=f"{name}_add2")([_cefn(bn("norm2")(x), f"{name}_cemlp", dim), x])


def _cefn(x, name, dim):
    """Channel-enhanced feed-forward: MLP with a 3x3 depthwise conv, image LayerNorm, times a
    scaled channel attention of the block input."""
    conv = keras.layers.Conv2D
    attn = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_ca_0")(x)
    attn = conv(dim // 8, 1, activation="relu", name=f"{name}_ca_1")(attn)
    attn = conv(dim, 1, activation="sigmoid", name=f"{name}_ca_3")(attn)
    attn = ChannelScale(name=f"{name}_scaler")(attn)
    hidden = dim * MLP_RATIO
    m = conv(hidden, 1, name=f"{name}_mlp_mlp_0")(x)
    m = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name=f"{name}_mlp_mlp_1")(m)
    m = conv(dim, 1, name=f"{name}_mlp_mlp_3")(m)
    m = ImageLayerNorm(1e-5, name=f"{name}_norm")(m)
    return keras.layers.Multiply(name=f"{name}_times_attn")([m, attn])


def _sk_fusion(a, b, name, reduction=8):
    """Selective-kernel fusion of two branches: a per-channel softmax over (a, b) from the
    pooled sum. A softmax over two logits is sigmoid(z_a - z_b), so out = b + (a - b) * s."""
    dim = int(a.shape[-1])
    d = max(dim // reduction, 4)
    conv = keras.layers.Conv2D
    z = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(keras.layers.Add(name=f"{name}_sum")([a, b]))
    z = conv(d, 1, use_bias=False, activation="relu", name=f"{name}_mlp_0")(z)
    za = conv(dim, 1, use_bias=False, name=f"{name}_mlp_2_x")(z)
    zb = conv(dim, 1, use_bias=False, name=f"{name}_mlp_2_skip")(z)
    s = keras.layers.Activation("sigmoid", name=f"{name}_weight")(keras.layers.Subtract(name=f"{name}_logit")([za, zb]))
    diff = keras.layers.Subtract(name=f"{name}_diff")([a, b])
    return keras.layers.Add(name=f"{name}_out")([b, keras.layers.Multiply(name=f"{name}_mix")([diff, s])])


def fold_batchnorm(model, input_shape=(None, None, 3), batch_size=None):
    """An equivalent LKD-Net without BatchNorm layers, for export (fewer ops, better int8).

    Each BatchNorm is an affine map ``s * x + t`` per channel (inference statistics) read only
    by 1x1 convs (``Linear1`` after ``norm1``; ``cemlp_mlp_mlp_0`` and, through the linear global
    pooling, ``cemlp_ca_1`` after ``norm2``), so ``W (s x + t) + c = (W s) x + (W t + c)`` exactly.
    """
    depths = tuple(sum(1 for l in model.layers if l.name.startswith(f"layer{i}_") and l.name.endswith("_norm1"))
                   for i in range(1, 6))
    variant = next((v for v, d in VARIANTS.items() if d == depths), None)
    if variant is None:
        raise ValueError(f"{model.name} is not an LKD-Net with BatchNorm layers (block depths {depths})")
    folded = LKDNet(variant, batchnorm=False, input_shape=input_shape, batch_size=batch_size, name=model.name)
    readers = {"norm1": ["Linear1"], "norm2": ["cemlp_mlp_mlp_0", "cemlp_ca_1"]}
    changed = {}
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        gamma, beta, mean, var = (w.numpy().astype("float64") for w in (layer.gamma, layer.beta, layer.moving_mean,
                                                                           layer.moving_variance))
        scale = gamma / (var + layer.epsilon) ** 0.5
        shift = beta - mean * scale
        block, norm = layer.name.rsplit("_", 1)
        for reader in readers[norm]:
            conv = model.get_layer(f"{block}_{reader}")
            kernel, bias = (w.numpy().astype("float64") for w in (conv.kernel, conv.bias))
            changed[conv.name] = [(kernel * scale[None, None, :, None]).astype("float32"),
                                  (bias + kernel[0, 0].T @ shift).astype("float32")]
    for layer in folded.layers:
        if not layer.weights:
            continue
        layer.set_weights(changed.get(layer.name) or model.get_layer(layer.name).get_weights())
    return folded
