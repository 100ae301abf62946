"""FABlock, AE-CR-Net's feature attention block (keras_dehaze/layers/attention.py)."""

import numpy as np

from keras_dehaze.backend import tf
from keras_dehaze.layers import FABlock
from tests.layer_testing import run_layer_test


def test_fa_block_contract_and_param_count():
    x = tf.random.uniform((2, 8, 8, 16))
    block = FABlock(16, reduction=4)
    run_layer_test(block, x, expected_shape=(2, 8, 8, 16), expected_trainable_weights=12)
    c, r = 16, 4
    expected = 2 * (9 * c * c + c) + (c * r + r) + (r * c + c) + (c * r + r) + (r + 1)
    assert block.count_params() == expected


def test_fa_block_matches_its_definition():
    """conv, ReLU, +x, conv, channel attention, pixel attention, +x — computed by hand."""
    rng = np.random.default_rng(0)
    block = FABlock(8, reduction=2)
    x = tf.constant(rng.uniform(-1, 1, (1, 5, 5, 8)), tf.float32)
    block(x)
    for w in block.weights:
        w.assign(rng.normal(0, 0.3, w.shape))
    sig = tf.sigmoid
    conv = lambda v, layer: tf.nn.conv2d(v, layer.kernel, 1, "SAME") + layer.bias  # noqa: E731
    y = tf.nn.relu(conv(x, block.conv1)) + x
    y = conv(y, block.conv2)
    ca = sig(conv(tf.nn.relu(conv(tf.reduce_mean(y, [1, 2], keepdims=True), block.ca_down)), block.ca_up))
    y = y * ca
    pa = sig(conv(tf.nn.relu(conv(y, block.pa_down)), block.pa_up))
    expected = y * pa + x
    np.testing.assert_allclose(block(x).numpy(), expected.numpy(), atol=1e-5)
