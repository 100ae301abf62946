"""DehazeFormer's blocks (keras_dehaze/layers/dehazeformer.py): RescaleNorm, window partition and
attention, DehazeFormerBlock, each against a direct NumPy reference."""

import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.layers import DehazeFormerBlock, RescaleNorm, WindowAttention
from keras_dehaze.layers.dehazeformer import relative_positions, window_partition, window_reverse
from tests.layer_testing import run_layer_test


def _rng(seed=0):
    return np.random.default_rng(seed)


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
    # .keras and TFLite once, for the configuration MS-DehazeNet uses
    run_layer_test(block, x, expected_shape=(1, 16, 16, c), export=conv_type == "DWConv" and use_attn)
    if conv_type == "DWConv" and use_attn:
        # RLN 6C, V/QK/proj 4C^2+4C, bias MLP 768+257h, DW 5x5 26C, MLP 2rC^2+(r+1)C
        assert block.count_params() == int((4 + 2 * r) * c * c + (37 + r) * c + 768 + 257 * heads)


def test_rescale_norm_passes_the_shared_layer_checks():
    x = tf.constant(_rng().normal(3, 2, (2, 4, 5, 8)).astype("float32"))
    run_layer_test(RescaleNorm(), x, expected_shape=[(2, 4, 5, 8), (2, 1, 1, 8), (2, 1, 1, 8)],
                   expected_trainable_weights=6)
