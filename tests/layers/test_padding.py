"""ReflectionPad2D, PadToMultiple, CropLike and ClipAtInference (keras_dehaze/layers/padding.py)."""

import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.layers import ClipAtInference, CropLike, PadToMultiple, ReflectionPad2D
from tests.layer_testing import run_layer_test


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


def test_padding_layers_pass_the_shared_layer_checks():
    x = tf.random.uniform((1, 5, 7, 3), -0.5, 1.5)
    run_layer_test(ReflectionPad2D(2), x, expected_shape=(1, 9, 11, 3), expected_trainable_weights=0)
    padded = run_layer_test(PadToMultiple(4, min_size=12), x, expected_shape=(1, 12, 12, 3), expected_trainable_weights=0)
    run_layer_test(CropLike(), [padded, x], expected_shape=(1, 5, 7, 3), expected_trainable_weights=0)
    run_layer_test(ClipAtInference(), x, expected_shape=(1, 5, 7, 3), expected_trainable_weights=0)
