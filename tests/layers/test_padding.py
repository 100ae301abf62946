import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.layers import AdaptiveMixup, ClipAtInference, CropLike, FABlock, PadToMultiple, ReflectionPad2D
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


def test_adaptive_mixup_is_sigmoid_weighted_sum():
    a, b = tf.ones((1, 2, 2, 3)), tf.zeros((1, 2, 2, 3))
    mix = AdaptiveMixup(-1.0)
    run_layer_test(mix, [a, b], expected_shape=(1, 2, 2, 3), expected_trainable_weights=1)
    np.testing.assert_allclose(mix([a, b]).numpy(), 1 / (1 + np.exp(1.0)), rtol=1e-6)


@pytest.mark.parametrize("size", [(413, 550), (3, 5), (1, 1), (8, 12)])
def test_pad_to_multiple_then_crop_round_trips(size):
    x = tf.random.uniform((1, *size, 3))
    padded = PadToMultiple(4)(x)
    assert padded.shape[1] % 4 == 0 and padded.shape[2] % 4 == 0
    assert padded.shape[1] - size[0] < 4 and padded.shape[2] - size[1] < 4
    np.testing.assert_array_equal(CropLike()([padded, x]).numpy(), x.numpy())


def test_pad_to_multiple_reflects_like_numpy():
    x = np.random.default_rng(0).uniform(size=(1, 6, 7, 3)).astype("float32")
    expected = np.pad(x, [(0, 0), (0, 2), (0, 1), (0, 0)], mode="reflect")
    np.testing.assert_array_equal(PadToMultiple(4)(tf.constant(x)).numpy(), expected)


def test_pad_to_multiple_dynamic_shape_graph():
    fn = tf.function(lambda v: PadToMultiple(4)(v), input_signature=[tf.TensorSpec([1, None, None, 3])])
    assert fn(tf.zeros((1, 3, 5, 3))).shape == (1, 4, 8, 3)
    assert fn(tf.zeros((1, 9, 10, 3))).shape == (1, 12, 12, 3)


def test_reflection_pad_and_clip():
    x = np.arange(12, dtype="float32").reshape(1, 2, 2, 3)
    np.testing.assert_array_equal(
        ReflectionPad2D(1)(tf.constant(x)).numpy(), np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    )
    v = tf.constant([[-0.5, 0.5, 1.5]])
    np.testing.assert_array_equal(ClipAtInference()(v, training=False).numpy(), [[0, 0.5, 1]])
    np.testing.assert_array_equal(ClipAtInference()(v, training=True).numpy(), v.numpy())
