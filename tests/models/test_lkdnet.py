"""LKD-Net: the Keras model and the official-checkpoint converter (its layers: tests/layers/test_lkd.py)."""

import os

import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.layers import DepthToSpace
from keras_dehaze.models import LKDNet, build_model
from keras_dehaze.zoo.lkdnet_weights import WeightConversionError, lkdnet_state_dict, load_lkdnet_state_dict
from keras_dehaze.zoo.torch_checkpoint import load_state_dict, save_state_dict
from tests.lkdnet_reference import lkdnet_reference, random_lkdnet_state_dict
from tests.layer_testing import run_model_saving_test

T_DEPTHS = (1, 1, 2, 1, 1)


@pytest.fixture(scope="module")
def lkd_t():
    sd = random_lkdnet_state_dict(T_DEPTHS, seed=3)
    return load_lkdnet_state_dict(LKDNet("t"), sd), sd


def test_parameter_counts_match_the_paper_models():
    count = lambda m: sum(int(np.prod(w.shape)) for w in m.trainable_weights)  # noqa: E731
    assert count(LKDNet("t")) == 344_182
    assert count(LKDNet("s")) == 636_208
    frozen = LKDNet("t", batchnorm_trainable=False)
    assert count(frozen) == 344_182 - 2 * sum(c * d * 2 for c, d in zip((24, 48, 96, 48, 24), T_DEPTHS))


def test_any_input_size_keeps_the_shape(lkd_t):
    model, _ = lkd_t
    for h, w in [(3, 5), (41, 43), (413, 550)]:
        y = model(tf.random.uniform([1, h, w, 3]), training=False)
        assert y.shape == (1, h, w, 3)
        assert np.all(np.isfinite(y.numpy())) and y.numpy().min() >= 0 and y.numpy().max() <= 1


def test_converted_network_matches_an_independent_numpy_reference(lkd_t):
    """Random official-layout weights: every conv, depthwise kernel, BatchNorm statistic, the
    PixelShuffle order, the SKFusion softmax and the K/B split must land right to match."""
    model, sd = lkd_t
    image = np.random.default_rng(1).uniform(0.1, 0.9, (44, 48, 3)).astype(np.float32)
    expected = lkdnet_reference(image, sd, T_DEPTHS)
    assert 0.2 < np.mean((expected > 0) & (expected < 1))  # not all clipped: the check has teeth
    got = model(image[None], training=False).numpy()[0]
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_kernels_land_transposed_element_by_element(lkd_t):
    model, sd = lkd_t
    dw = sd["module.layer3.blocks.1.DWDConv.weight"]  # (C, 1, 7, 7)
    k = model.get_layer("layer3_blocks_1_DWDConv").depthwise_kernel.numpy()  # (7, 7, C, 1)
    for c, i, j in [(0, 0, 0), (5, 6, 2), (95, 3, 6)]:
        assert k[i, j, c, 0] == dw[c, 0, i, j]
    dense = sd["module.layer2.blocks.0.Linear1.weight"]  # (O, I, 1, 1)
    kd = model.get_layer("layer2_blocks_0_Linear1").kernel.numpy()  # (1, 1, I, O)
    for o, i in [(0, 0), (3, 7), (47, 20)]:
        assert kd[0, 0, i, o] == dense[o, i, 0, 0]
    bn = model.get_layer("layer1_blocks_0_norm2")
    np.testing.assert_array_equal(bn.moving_mean.numpy(), sd["module.layer1.blocks.0.norm2.running_mean"])
    np.testing.assert_array_equal(bn.moving_variance.numpy(), sd["module.layer1.blocks.0.norm2.running_var"])
    np.testing.assert_array_equal(bn.gamma.numpy(), sd["module.layer1.blocks.0.norm2.weight"])


def test_pixel_shuffle_channel_order(lkd_t):
    """PyTorch channel c*4 + i*2 + j goes to output channel c at offset (i, j)."""
    model, sd = lkd_t
    bias = sd["module.patch_split2.proj.0.bias"]  # 24 * 4 channels in PyTorch order
    k_bias = model.get_layer("patch_split2_proj_0").bias.numpy()
    x = tf.constant(np.tile(k_bias, (1, 1, 1, 1)).reshape(1, 1, 1, -1))
    shuffled = DepthToSpace(2)(x).numpy()[0]  # (2, 2, 24)
    for c in (0, 7, 23):
        for i in range(2):
            for j in range(2):
                assert shuffled[i, j, c] == bias[c * 4 + i * 2 + j]


def test_state_dict_round_trip_through_a_pth_file(lkd_t, tmp_path):
    model, sd = lkd_t
    save_state_dict(tmp_path / "lkd.pth", lkdnet_state_dict(model))
    back = load_state_dict(tmp_path / "lkd.pth")
    for key, value in sd.items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(back[key], value, err_msg=key)
    again = load_lkdnet_state_dict(LKDNet("t"), back)
    x = tf.random.uniform([1, 48, 48, 3])
    np.testing.assert_array_equal(again(x, training=False).numpy(), model(x, training=False).numpy())


def test_converter_lists_unknown_missing_and_misshaped_keys():
    sd = random_lkdnet_state_dict(T_DEPTHS)
    sd["module.extra.weight"] = np.zeros(3, np.float32)
    del sd["module.skip1.bias"]
    del sd["module.fusion1.mlp.2.weight"]
    sd["module.layer1.blocks.0.DWConv.weight"] = np.zeros((24, 1, 3, 3), np.float32)
    with pytest.raises(WeightConversionError) as e:
        load_lkdnet_state_dict(LKDNet("t"), sd)
    text = str(e.value)
    assert "unknown key(s)" in text and "extra.weight" in text
    assert "missing key(s)" in text and "skip1.bias" in text and "fusion1.mlp.2.weight" in text
    assert "mis-shaped" in text and "layer1.blocks.0.DWConv.weight: checkpoint (24, 1, 3, 3), network needs (24, 1, 5, 5)" in text
    with pytest.raises(WeightConversionError, match="missing key"):  # an LKD-T checkpoint into LKD-S
        load_lkdnet_state_dict(LKDNet("s"), random_lkdnet_state_dict(T_DEPTHS))


def test_model_round_trips_config_and_keras_file(lkd_t, tmp_path):
    model, _ = lkd_t
    x = tf.random.uniform([1, 40, 44, 3])
    clone = build_model("lkdnet", variant="t").__class__.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-6)
    run_model_saving_test(model, x, tmp_path)


def test_a_training_step_reaches_every_trainable_weight():
    model = LKDNet("t")
    x = tf.random.uniform([2, 48, 48, 3])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(model(x, training=True) - x))
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None for g in grads)


def test_tflite_float32_matches_keras(lkd_t, tmp_path):
    model, _ = lkd_t
    fixed = LKDNet("t", input_shape=(48, 64, 3), batch_size=1)
    fixed.set_weights(model.get_weights())
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    flat = converter.convert()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flat)
    interpreter.allocate_tensors()
    x = np.random.default_rng(2).uniform(size=(1, 48, 64, 3)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, model(x, training=False).numpy(), atol=1e-4)


# ---- the official weights and the shipped presets on real benchmark images (when present) ----

def _pairs(folder, names):
    import cv2

    for hazy_name in names:
        clear_name = hazy_name.split("_")[0] + ".png"
        hazy = cv2.imread(os.path.join(folder, "hazy", hazy_name))[..., ::-1] / 255.0
        clear = cv2.imread(os.path.join(folder, "clear", clear_name))[..., ::-1] / 255.0
        yield hazy.astype(np.float32), clear


def _mean_psnr(model, pairs):
    values = []
    for hazy, clear in pairs:
        y = model(hazy[None], training=False).numpy()[0].astype(np.float64)
        values.append(10 * np.log10(1.0 / np.mean((y - clear) ** 2)))
    return float(np.mean(values))


@pytest.mark.slow  # real-data accuracy: 10 SOTS-indoor images through LKD-S (about 20 s)
def test_official_its_preset_reproduces_published_quality_indoors(data_dir):
    from keras_dehaze import pretrained

    folder = os.path.join(data_dir, "sots-indoor")
    names = [f"{i}_5.png" for i in range(1400, 1410)]
    if not all(os.path.exists(os.path.join(folder, "hazy", n)) for n in names):
        pytest.skip(f"SOTS-indoor scenes 1400-1409 not found under {data_dir}")
    assert _mean_psnr(pretrained.load_pretrained("lkdnet_s_its"), _pairs(folder, names)) >= 36.5


@pytest.mark.slow  # real-data accuracy: 20 SOTS-outdoor images through LKD-S (about 30 s)
def test_official_ots_preset_reproduces_published_quality_outdoors(data_dir):
    from keras_dehaze import pretrained

    folder = os.path.join(data_dir, "sots-outdoor")
    if not os.path.isdir(folder):
        pytest.skip(f"SOTS-outdoor not found under {data_dir}")
    names = sorted(os.listdir(os.path.join(folder, "hazy")))[:20]
    assert _mean_psnr(pretrained.load_pretrained("lkdnet_s_ots"), _pairs(folder, names)) >= 35.0


def test_conversion_from_the_official_checkpoint_equals_the_shipped_preset(lkd_weights_dir):
    from keras_dehaze import pretrained

    path = os.path.join(lkd_weights_dir, "ITS", "LKD-t.pth")
    if not os.path.exists(path):
        pytest.skip(f"official LKD-Net checkpoints not found under {lkd_weights_dir}")
    converted = load_lkdnet_state_dict(LKDNet("t"), load_state_dict(path))
    shipped = pretrained.load_pretrained("lkdnet_t_its")
    for a, b in zip(converted.get_weights(), shipped.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_shipped_int8_of_the_default_preset_matches_float_at_any_multiple_of_4():
    """The default preset's int8 file (converted at 256x256, no pad/crop ops) runs at other
    sizes by resizing its input, and stays close to the float network."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_dehaze import pretrained

    meta = pretrained.metadata(pretrained.DEFAULT)
    path = os.path.join(pretrained.WEIGHTS_DIR, meta["int8_tflite"])
    model = pretrained.load_pretrained(pretrained.DEFAULT)
    rng = np.random.default_rng(5)
    for h, w in [(256, 256), (96, 160)]:
        clear = np.kron(rng.uniform(0, 1, (h // 8, w // 8, 3)), np.ones((8, 8, 1))).astype(np.float32)
        hazy = (clear * 0.6 + 0.35).astype(np.float32)[None]
        interpreter = Interpreter(model_path=path)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, [1, h, w, 3])
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, hazy)
        interpreter.invoke()
        got = np.clip(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]), 0, 1)
        want = model(hazy, training=False).numpy()
        assert got.shape == want.shape
        assert 10 * np.log10(1.0 / np.mean((got - want) ** 2)) > 35.0


def test_folding_batchnorm_keeps_the_outputs(lkd_t):
    from keras_dehaze.models.lkdnet import fold_batchnorm

    model, _ = lkd_t
    folded = fold_batchnorm(model)
    assert not any(type(layer).__name__ == "BatchNormalization" for layer in folded.layers)
    x = tf.random.uniform([1, 48, 56, 3])
    np.testing.assert_allclose(folded(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="not an LKD-Net with BatchNorm"):
        fold_batchnorm(folded)
