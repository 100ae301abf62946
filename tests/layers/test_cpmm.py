"""CORUN's proximal module (keras_dehaze/layers/cpmm.py): spectral attention against the reference
math, the transformer block and CPMM contracts, and CPMM's parameter count against the reference
layout (``mst_params``, also used by tests/models/test_corun.py)."""

import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.layers import CPMM, SpectralAttention, SpectralTransformerBlock
from tests.layer_testing import run_layer_test


RNG = np.random.default_rng(0)


def _u(shape, lo=0.0, hi=1.0):
    return tf.constant(RNG.uniform(lo, hi, shape), tf.float32)


def _ms_msa_reference(layer, x):
    """The reference MS_MSA forward in NumPy (heads, L2 over pixels, attn = K Q^T, softmax, attn V)."""
    b, h, w, c = x.shape
    heads = layer.num_heads
    d = c // heads
    xf = x.numpy().reshape(b * h * w, c).astype(np.float64)
    kernel = lambda conv: conv.kernel.numpy()[0, 0].astype(np.float64)  # noqa: E731
    q, k, v = xf @ kernel(layer.to_q), xf @ kernel(layer.to_k), xf @ kernel(layer.to_v)
    out = np.zeros_like(q)
    for i in range(heads):
        sl = slice(i * d, (i + 1) * d)
        qh, kh, vh = q[:, sl].T, k[:, sl].T, v[:, sl].T  # [d, hw]
        qh = qh / np.maximum(np.linalg.norm(qh, axis=-1, keepdims=True), 1e-12)
        kh = kh / np.maximum(np.linalg.norm(kh, axis=-1, keepdims=True), 1e-12)
        attn = (kh @ qh.T) * layer.rescale.numpy()[i]
        attn = np.exp(attn - attn.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        out[:, sl] = (attn @ vh).T
    out = out @ kernel(layer.proj) + layer.proj.bias.numpy()
    v_map = tf.constant(v.reshape(b, h, w, c), tf.float32)
    pos = layer.pos_conv2(tf.nn.gelu(layer.pos_conv1(v_map), approximate=False)).numpy()
    return out.reshape(b, h, w, c) + pos


def test_spectral_attention_matches_the_reference_math():
    x = _u((1, 5, 6, 8), -1, 1)
    layer = SpectralAttention(num_heads=2)
    layer(x)
    for wgt in layer.weights:  # non-trivial weights, incl. per-head rescale
        wgt.assign(RNG.normal(0, 0.5, wgt.shape))
    np.testing.assert_allclose(layer(x).numpy(), _ms_msa_reference(layer, x), atol=1e-4)
    single = SpectralAttention(num_heads=1)
    single(x)
    np.testing.assert_allclose(single(x).numpy(), _ms_msa_reference(single, x), atol=1e-4)
    with pytest.raises(ValueError, match="divisible"):
        SpectralAttention(num_heads=3)(x)


def test_transformer_block_and_cpmm_contracts():
    x = _u((2, 8, 8, 8))
    # attention: q, k, v, proj (kernel + bias), 2 depthwise, rescale = 8; + ffn 3 + norm 2 = 13
    run_layer_test(SpectralAttention(num_heads=2), x, (2, 8, 8, 8), 8)
    run_layer_test(SpectralTransformerBlock(num_heads=2, ffn_expansion=2), x, (2, 8, 8, 8), 13)
    t_hat, scene = _u((2, 8, 12, 1)), _u((2, 8, 12, 3))
    run_layer_test(CPMM(width=4, levels=2), [t_hat, scene], (2, 8, 12, 1), export=False)
    run_layer_test(CPMM(width=4, levels=1, num_blocks=2), [scene, t_hat], (2, 8, 12, 3))
    with pytest.raises(ValueError, match="even"):
        CPMM(width=5)


def mst_params(out, width=30, levels=3):
    """Parameter count of the reference MST(in_dim=4, out_dim, dim=width, stage=levels, [1]*...)."""
    block = lambda d, heads: 12 * d * d + 57 * d + heads  # noqa: E731  MS_MSA + PreNorm(FFN)
    n = 4 * width * 9  # embedding
    for i in range(levels):
        d = width * 2**i
        n += block(d, 2**i) + d * (d // 2) * 9  # encoder block + downsample conv
        n += (2 * d) * (4 * d) * 9 + 2 * d * d + block(d, 2**i)  # upsample conv, fusion, decoder
    return n + block(width * 2**levels, 2**levels) + width * out * 9  # bottleneck + mapping


def test_cpmm_parameter_count_follows_the_reference_layout():
    for out, width, levels in ((1, 8, 3), (3, 8, 3), (3, 6, 2)):
        layer = CPMM(width=width, levels=levels)
        layer([tf.zeros((1, 8, 8, out)), tf.zeros((1, 8, 8, 4 - out))])
        assert layer.count_params() == mst_params(out, width, levels)
    assert (mst_params(1), mst_params(3)) == (2_667_442, 2_667_982)
