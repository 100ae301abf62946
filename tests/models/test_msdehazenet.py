"""MS-DehazeNet and its blocks: NAFBlock (NAFNet) and DehazeFormer (RescaleNorm, window attention)."""

import collections

import numpy as np
import pytest

from keras_dehaze.backend import keras, tf
from keras_dehaze.layers import (
    DehazeFormerBlock,
    LayerNorm2D,
    NAFBlock,
    RescaleNorm,
    SimpleGate,
    WindowAttention,
)
from keras_dehaze.layers.dehazeformer import relative_positions, window_partition, window_reverse
from keras_dehaze.models import MODELS, MSDehazeNet, build_model
from keras_dehaze.models.complexity import count_macs
from tests.layer_testing import run_layer_test

TINY = dict(widths=(8, 16, 16), num_blocks=(1, 1, 2, 1, 1), heads=2)


def _rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- NAFNet blocks


def test_layer_norm_2d_is_nafnet_layernorm2d():
    x = _rng().normal(2, 3, (2, 5, 6, 8)).astype("float32")
    ln = LayerNorm2D()
    ln(x)
    w, b = _rng(1).normal(size=(2, 8)).astype("float32")
    ln.gamma.assign(w)
    ln.beta.assign(b)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    expected = (x - mu) / np.sqrt(var + 1e-6) * w + b
    np.testing.assert_allclose(ln(x).numpy(), expected, atol=1e-4)
    assert ln.epsilon == 1e-6 and LayerNorm2D.from_config(ln.get_config()).epsilon == 1e-6


def test_simple_gate_multiplies_channel_halves():
    x = _rng().normal(size=(1, 3, 3, 6)).astype("float32")
    np.testing.assert_allclose(SimpleGate()(x).numpy(), x[..., :3] * x[..., 3:], rtol=1e-6)
    with pytest.raises(ValueError, match="even"):
        SimpleGate()(tf.zeros((1, 2, 2, 5)))


def test_nafblock_contract_param_count_and_identity_at_init():
    x = tf.random.normal((2, 7, 9, 16))
    block = NAFBlock(16)
    y = block(x)
    np.testing.assert_array_equal(y.numpy(), x.numpy())  # beta = gamma = 0
    c = 16
    assert block.count_params() == 7 * c * c + 33 * c  # NAFNet reference formula
    block.beta.assign(tf.random.normal((c,)))
    block.gamma.assign(tf.random.normal((c,)))
    run_layer_test(block, x, expected_shape=(2, 7, 9, 16), expected_trainable_weights=18)


# --------------------------------------------------------------------------- DehazeFormer blocks


def test_rescale_norm_normalises_over_chw_and_returns_stats():
    x = _rng().normal(3, 2, (2, 6, 5, 8)).astype("float32")
    norm = RescaleNorm()
    out, rescale, rebias = norm(x)
    out = out.numpy()
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5)  # weight 1, bias 0 at init
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-3)
    mean = x.mean(axis=(1, 2, 3))
    std = np.sqrt(x.var(axis=(1, 2, 3)) + 1e-5)
    k1, b1 = (w.numpy() for w in norm.meta1.weights)
    k2, b2 = (w.numpy() for w in norm.meta2.weights)
    np.testing.assert_allclose(rescale.numpy()[:, 0, 0], std[:, None] * k1[0, 0, 0] + b1, rtol=1e-5)
    np.testing.assert_allclose(rebias.numpy()[:, 0, 0], mean[:, None] * k2[0, 0, 0] + b2, rtol=1e-5, atol=1e-6)
    assert rescale.shape == (2, 1, 1, 8)
    np.testing.assert_allclose(b1, 1.0)  # reference init: meta1 bias 1, meta2 bias 0
    np.testing.assert_allclose(b2, 0.0)
    clone = RescaleNorm.from_config(norm.get_config())
    clone(x)
    clone.set_weights(norm.get_weights())
    for a, b in zip(clone(x), norm(x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    with tf.GradientTape() as tape:
        loss = sum(tf.reduce_sum(t) for t in norm(x))
    assert all(g is not None for g in tape.gradient(loss, norm.trainable_weights))


def _np_window_partition(x, ws):
    b, h, w, c = x.shape
    x = x.reshape(b, h // ws, ws, w // ws, ws, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


@pytest.mark.parametrize("shape", [(2, 16, 24, 5), (1, 8, 8, 3)])
def test_window_partition_matches_reference_order_and_round_trips(shape):
    x = _rng().normal(size=shape).astype("float32")
    windows = window_partition(tf.constant(x), 8)
    np.testing.assert_array_equal(windows.numpy(), _np_window_partition(x, 8))
    np.testing.assert_array_equal(window_reverse(windows, 8, shape[1], shape[2]).numpy(), x)
    # Dynamic spatial size (graph with unknown H, W).
    fn = tf.function(
        lambda v: window_reverse(window_partition(v, 8), 8, tf.shape(v)[1], tf.shape(v)[2]),
        input_signature=[tf.TensorSpec([None, None, None, shape[-1]])],
    )
    np.testing.assert_array_equal(fn(x).numpy(), x)


def test_relative_positions_are_log_scaled():
    rel = relative_positions(8)
    assert rel.shape == (64, 64, 2)
    np.testing.assert_allclose(rel[0, 1], [0, -np.log(2)])  # token (0,0) vs (0,1)
    np.testing.assert_allclose(rel[63, 0], [np.log(8), np.log(8)])  # (7,7) vs (0,0)


def _np_window_attention(qkv, attn_layer):
    """Direct per-window, per-head reference: reflect pad, softmax(q k^T / sqrt(d) + B) v, crop."""
    ws, s, dim, heads = attn_layer.window_size, attn_layer.shift_size, attn_layer.dim, attn_layer.num_heads
    d = dim // heads
    b, h, w, _ = qkv.shape
    mh, mw = -h % ws, -w % ws
    pads = [(s, (ws - s + mh) % ws), (s, (ws - s + mw) % ws)] if s else [(0, mh), (0, mw)]
    x = np.pad(qkv, [(0, 0), *pads, (0, 0)], mode="reflect")
    k1, b1, k2, b2 = (v.numpy() for v in attn_layer.weights)
    rel = relative_positions(ws).reshape(-1, 2)
    bias = (np.maximum(rel @ k1 + b1, 0) @ k2 + b2).reshape(ws * ws, ws * ws, heads)
    out = np.zeros(x.shape[:3] + (dim,), np.float64)
    for n in range(b):
        for i in range(0, x.shape[1], ws):
            for j in range(0, x.shape[2], ws):
                tok = x[n, i : i + ws, j : j + ws].reshape(ws * ws, 3 * dim)
                for hd in range(heads):
                    q = tok[:, hd * d : (hd + 1) * d]
                    k = tok[:, dim + hd * d : dim + (hd + 1) * d]
                    v = tok[:, 2 * dim + hd * d : 2 * dim + (hd + 1) * d]
                    logits = q @ k.T / np.sqrt(d) + bias[:, :, hd]
                    p = np.exp(logits - logits.max(-1, keepdims=True))
                    p /= p.sum(-1, keepdims=True)
                    out[n, i : i + ws, j : j + ws, hd * d : (hd + 1) * d] = (p @ v).reshape(ws, ws, d)
    return out[:, s : s + h, s : s + w]


@pytest.mark.parametrize("shift,size", [(0, (16, 16)), (4, (16, 16)), (4, (13, 19)), (0, (10, 9))])
def test_window_attention_matches_direct_reference(shift, size):
    dim, heads = 8, 2
    attn = WindowAttention(dim, heads, window_size=8, shift_size=shift)
    qkv = _rng(shift).normal(size=(2, *size, 3 * dim)).astype("float32")
    y = attn(qkv).numpy()
    assert y.shape == (2, *size, dim)
    np.testing.assert_allclose(y, _np_window_attention(qkv, attn), atol=1e-4)
    # With a zero bias MLP it is plain softmax(QK^T/sqrt(d))V per window.
    for w in attn.meta2.weights:
        w.assign(tf.zeros_like(w))
    np.testing.assert_allclose(attn(qkv).numpy(), _np_window_attention(qkv, attn), atol=1e-4)


def test_window_attention_contract():
    attn = WindowAttention(8, 2, window_size=8, shift_size=4)
    run_layer_test(attn, tf.random.normal((1, 16, 16, 24)), expected_shape=(1, 16, 16, 8), expected_trainable_weights=4)
    with pytest.raises(ValueError, match="divisible"):
        WindowAttention(10, 3)


@pytest.mark.parametrize("conv_type,use_attn", [("DWConv", True), ("Conv", True), (None, True), ("DWConv", False)])
def test_dehazeformer_block_contract(conv_type, use_attn):
    c, heads, r = 16, 2, 2.0
    block = DehazeFormerBlock(c, heads, mlp_ratio=r, shift_size=4, conv_type=conv_type, use_attn=use_attn)
    x = tf.random.normal((1, 16, 16, c))
    run_layer_test(block, x, expected_shape=(1, 16, 16, c))
    if conv_type == "DWConv" and use_attn:
        # RLN 6C, V/QK/proj 4C^2+4C, bias MLP 768+257h, DW 5x5 26C, MLP 2rC^2+(r+1)C
        assert block.count_params() == int((4 + 2 * r) * c * c + (37 + r) * c + 768 + 257 * heads)


# --------------------------------------------------------------------------- the network


@pytest.fixture(scope="module")
def tiny():
    return MSDehazeNet(**TINY)


@pytest.mark.parametrize("size", [(45, 70), (64, 64), (5, 7)])
def test_three_outputs_at_h_h2_h4_in_unit_range(tiny, size):
    x = tf.random.uniform((1, *size, 3))
    outs = tiny(x, training=False)
    assert isinstance(outs, list) and len(outs) == 3
    h, w = size
    expected = [(h, w), (-(-h // 2), -(-w // 2)), (-(-h // 4), -(-w // 4))]
    assert [tuple(o.shape[1:3]) for o in outs] == expected
    for o in outs:
        assert o.shape[-1] == 3
        assert float(tf.reduce_min(o)) >= 0.0 and float(tf.reduce_max(o)) <= 1.0


def test_outputs_are_residuals_on_each_scale_at_init(tiny):
    # NAF blocks are identities at init, but the heads are not zero: just check the J/4 output
    # follows I/4 when the last conv is zeroed.
    head = tiny.get_layer("out_x4")
    saved = [w.numpy() for w in head.weights]
    for w in head.weights:
        w.assign(tf.zeros_like(w))
    x = tf.random.uniform((1, 32, 32, 3))
    expected = tf.nn.avg_pool2d(tf.nn.avg_pool2d(x, 2, 2, "VALID"), 2, 2, "VALID")
    np.testing.assert_allclose(tiny(x, training=False)[2].numpy(), expected.numpy(), atol=1e-6)
    for w, v in zip(head.weights, saved):
        w.assign(v)


def test_save_load_round_trip(tiny, tmp_path):
    x = tf.random.uniform((1, 40, 36, 3))
    path = str(tmp_path / "msdehazenet.keras")
    expected = tiny(x, training=False)
    tiny.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    for a, b in zip(restored(x, training=False), expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_gradients_reach_every_weight(tiny):
    x = tf.random.uniform((2, 32, 32, 3))
    with tf.GradientTape() as tape:
        j1, j2, j4 = tiny(x, training=True)
        loss = tf.reduce_mean(tf.abs(j1 - x)) + 0.5 * tf.reduce_mean(j2) + 0.25 * tf.reduce_mean(j4)
    grads = tape.gradient(loss, tiny.trainable_weights)
    missing = [w.name for w, g in zip(tiny.trainable_weights, grads) if g is None]
    assert not missing


def test_default_size_matches_the_paper_and_registry():
    model = build_model("msdehazenet")
    assert MODELS["msdehazenet"] is MSDehazeNet
    assert model.count_params() == 1_570_881  # paper: 1.57M
    assert [o.shape[1:] for o in model(tf.zeros((1, 32, 32, 3)))] == [(32, 32, 3), (16, 16, 3), (8, 8, 3)]


def test_count_macs_on_known_layers():
    inp = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(8, 3, padding="same")(inp)  # 16*16*8*27 = 55,296
    y = keras.layers.DepthwiseConv2D(3, padding="same")(y)  # 16*16*8*9 = 18,432
    y = keras.layers.Conv2DTranspose(4, 2, strides=2)(y)  # 16*16*8*4*4 = 32,768
    y = keras.layers.Dense(5)(y)  # 32*32*4*5 = 20,480
    model = keras.Model(inp, y)
    total, per_layer = count_macs(model, (16, 16, 3), by_layer=True)
    assert total == 55_296 + 18_432 + 32_768 + 20_480
    assert per_layer[model.layers[1].name] == 55_296
    attn = WindowAttention(8, 2)
    qkv_in = keras.Input((16, 16, 24))
    attn_model = keras.Model(qkv_in, attn(qkv_in))
    n_windows, n, bias_mlp = 4, 64, 64 * 64 * (2 * 256 + 256 * 2)
    assert count_macs(attn_model, (16, 16, 24)) == 2 * n_windows * 2 * n * n * 4 + bias_mlp


# --------------------------------------------------------------------------- edge


def test_tflite_builtin_ops_only_and_parity(tmp_path):
    model = MSDehazeNet(**TINY, input_shape=(64, 64, 3), batch_size=1)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flat = converter.convert()
    path = tmp_path / "msdehazenet.tflite"
    path.write_bytes(flat)

    from keras_dehaze.edge import flatbuffer as tflite_model, gpu_compat

    info = tflite_model.load_model_info(flat)
    ops = collections.Counter(op.name for sg in info.subgraphs for op in sg.ops)
    assert not [name for name in ops if name.startswith("Flex") or "CUSTOM" in name], ops
    assert not any(op.is_custom for sg in info.subgraphs for op in sg.ops)
    report = gpu_compat.check_gpu_compatibility(str(path))
    print("TFLite ops:", dict(sorted(ops.items())))
    print(report.format())

    from ai_edge_litert.interpreter import Interpreter  # the project's runtime (ai-edge-litert)

    interpreter = Interpreter(model_content=flat)
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).uniform(size=(1, 64, 64, 3)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    by_size = {d["shape"][1]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    for ref in model(x, training=False):
        np.testing.assert_allclose(by_size[ref.shape[1]], ref.numpy(), atol=1e-4)
