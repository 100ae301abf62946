"""LKD-Net's layers (keras_dehaze/layers/lkd.py): ImageLayerNorm, ChannelScale, DepthToSpace."""

import numpy as np

from keras_dehaze.backend import tf
from keras_dehaze.layers import ChannelScale, DepthToSpace, ImageLayerNorm
from tests.layer_testing import run_layer_test


def test_layers_pass_the_shared_layer_checks():
    x = tf.random.normal([2, 6, 7, 8])
    run_layer_test(ImageLayerNorm(), x, expected_shape=(2, 6, 7, 8), expected_trainable_weights=2)
    run_layer_test(ChannelScale(), x, expected_shape=(2, 6, 7, 8), expected_trainable_weights=1)
    out = run_layer_test(DepthToSpace(2), x, expected_shape=(2, 12, 14, 2), expected_trainable_weights=0)
    assert out.shape == (2, 12, 14, 2)


def test_image_layer_norm_normalises_over_the_whole_image():
    x = np.random.default_rng(0).normal(3.0, 2.0, (2, 5, 6, 4)).astype(np.float32)
    layer = ImageLayerNorm(1e-5)
    layer.build(x.shape)
    layer.set_weights([np.array([1, 2, 3, 4], np.float32), np.array([0, 1, 0, -1], np.float32)])
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = np.sqrt(x.var(axis=(1, 2, 3), keepdims=True) + 1e-5)
    expected = (x - mean) / std * np.array([1, 2, 3, 4]) + np.array([0, 1, 0, -1])
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-5)
