"""AdaptiveMixup (keras_dehaze/layers/mixup.py)."""

import numpy as np

from keras_dehaze.backend import tf
from keras_dehaze.layers import AdaptiveMixup
from tests.layer_testing import run_layer_test


def test_adaptive_mixup_is_sigmoid_weighted_sum():
    a, b = tf.ones((1, 2, 2, 3)), tf.zeros((1, 2, 2, 3))
    mix = AdaptiveMixup(-1.0)
    run_layer_test(mix, [a, b], expected_shape=(1, 2, 2, 3), expected_trainable_weights=1)
    np.testing.assert_allclose(mix([a, b]).numpy(), 1 / (1 + np.exp(1.0)), rtol=1e-6)
