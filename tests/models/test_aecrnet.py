import numpy as np
import pytest

from keras_dehaze.backend import keras, tf
from keras_dehaze.models import AECRNet, build_model
from tests.layer_testing import run_model_saving_test


@pytest.fixture(scope="module")
def small():
    return AECRNet(filters=8)


def test_parameter_counts_match_the_reference_code():
    assert AECRNet().count_params() == 2_614_145
    assert AECRNet(input_conv=True).count_params() == 2_614_229
    assert AECRNet(share_weights=False).count_params() == 9_291_905
    assert AECRNet(share_weights=False, input_conv=True).count_params() == 9_291_989


def test_shared_weights_apply_one_block_six_times():
    model = AECRNet(filters=8)
    fa = [l for l in model.layers if l.__class__.__name__ == "FABlock"]
    dcn = [l for l in model.layers if l.__class__.__name__ == "DeformableConv2D"]
    assert len(fa) == 1 and len(fa[0].inbound_nodes) == 6
    assert len(dcn) == 1 and len(dcn[0].inbound_nodes) == 2
    unshared = AECRNet(filters=8, share_weights=False)
    assert sum(l.__class__.__name__ == "FABlock" for l in unshared.layers) == 6
    assert sum(l.__class__.__name__ == "DeformableConv2D" for l in unshared.layers) == 2


@pytest.mark.parametrize("size", [(413, 550), (3, 5), (64, 48)])
def test_any_input_size_and_output_in_unit_range(small, size):
    x = tf.random.uniform((1, *size, 3))
    y = small(x, training=False)
    assert y.shape == (1, *size, 3)
    assert float(tf.reduce_min(y)) >= 0.0 and float(tf.reduce_max(y)) <= 1.0


def test_output_is_clipped_only_at_inference(small):
    # Push the final conv bias so that tanh output is negative before clipping.
    up3 = small.get_layer("up3")
    old = up3.bias.numpy()
    up3.bias.assign(old - 5.0)
    x = tf.random.uniform((1, 16, 16, 3))
    assert float(tf.reduce_max(small(x, training=True))) < 0
    assert float(tf.reduce_min(small(x, training=False))) == 0.0
    up3.bias.assign(old)


def test_fixed_size_batch_one_build_for_export():
    model = AECRNet(filters=8, input_shape=(32, 48, 3), batch_size=1)
    assert model.input_shape == (1, 32, 48, 3)
    assert model(tf.zeros((1, 32, 48, 3))).shape == (1, 32, 48, 3)


def test_save_load_round_trip_and_config(small, tmp_path):
    x = tf.random.uniform((1, 20, 24, 3))
    run_model_saving_test(small, x, tmp_path)
    clone = keras.Model.from_config(small.get_config())
    clone.set_weights(small.get_weights())
    np.testing.assert_allclose(clone(x, training=False).numpy(), small(x, training=False).numpy(), atol=1e-5)


def test_gradients_reach_every_weight(small):
    x = tf.random.uniform((2, 16, 16, 3))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(small(x, training=True) - x))
    grads = tape.gradient(loss, small.trainable_weights)
    assert all(g is not None for g in grads)


def test_registry():
    assert build_model("AECRNet", filters=8).count_params() == AECRNet(filters=8).count_params()
    with pytest.raises(ValueError, match="known models"):
        build_model("nonet")
