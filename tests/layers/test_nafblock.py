"""NAFNet's blocks (keras_dehaze/layers/nafblock.py): LayerNorm2D, SimpleGate, NAFBlock."""

import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.layers import LayerNorm2D, NAFBlock, SimpleGate
from tests.layer_testing import run_layer_test


def _rng(seed=0):
    return np.random.default_rng(seed)


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


def test_layer_norm_and_simple_gate_pass_the_shared_layer_checks():
    x = tf.constant(_rng().normal(size=(1, 3, 4, 6)).astype("float32"))
    run_layer_test(LayerNorm2D(), x, expected_shape=(1, 3, 4, 6), expected_trainable_weights=2)
    run_layer_test(SimpleGate(), x, expected_shape=(1, 3, 4, 3), expected_trainable_weights=0)
