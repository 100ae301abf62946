"""MS-DehazeNet, the network (keras_dehaze/models/msdehazenet.py). Its blocks (NAFBlock, DehazeFormer)
are tested in tests/layers/test_nafblock.py and tests/layers/test_dehazeformer.py."""

import collections

import numpy as np
import pytest

from keras_dehaze.backend import keras, tf
from keras_dehaze.layers import WindowAttention
from keras_dehaze.models import MODELS, MSDehazeNet, build_model
from keras_dehaze.models.complexity import count_macs

TINY = dict(widths=(8, 16, 16), num_blocks=(1, 1, 2, 1, 1), heads=2)


def _rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- the network


@pytest.fixture(scope="module")
def tiny():
    return MSDehazeNet(**TINY)


@pytest.mark.parametrize("size", [(45, 70), (64, 64), (5, 7)])
def test_three_outputs_at_h_h2_h4_in_unit_range(tiny, size):
    x = tf.random.uniform((1, *size, 3))
    outs = tiny(x, training=False)
    assert isinstance(outs, list) and len(outs) == 3
    h, w = size
    expected = [(h, w), (-(-h // 2), -(-w // 2)), (-(-h // 4), -(-w // 4))]
    assert [tuple(o.shape[1:3]) for o in outs] == expected
    for o in outs:
        assert o.shape[-1] == 3
        assert float(tf.reduce_min(o)) >= 0.0 and float(tf.reduce_max(o)) <= 1.0


def test_outputs_are_residuals_on_each_scale_at_init(tiny):
    # NAF blocks are identities at init, but the heads are not zero: just check the J/4 output
    # follows I/4 when the last conv is zeroed.
    head = tiny.get_layer("out_x4")
    saved = [w.numpy() for w in head.weights]
    for w in head.weights:
        w.assign(tf.zeros_like(w))
    x = tf.random.uniform((1, 32, 32, 3))
    expected = tf.nn.avg_pool2d(tf.nn.avg_pool2d(x, 2, 2, "VALID"), 2, 2, "VALID")
    np.testing.assert_allclose(tiny(x, training=False)[2].numpy(), expected.numpy(), atol=1e-6)
    for w, v in zip(head.weights, saved):
        w.assign(v)


def test_save_load_round_trip(tiny, tmp_path):
    x = tf.random.uniform((1, 40, 36, 3))
    path = str(tmp_path / "msdehazenet.keras")
    expected = tiny(x, training=False)
    tiny.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    for a, b in zip(restored(x, training=False), expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_gradients_reach_every_weight(tiny):
    x = tf.random.uniform((2, 32, 32, 3))
    with tf.GradientTape() as tape:
        j1, j2, j4 = tiny(x, training=True)
        loss = tf.reduce_mean(tf.abs(j1 - x)) + 0.5 * tf.reduce_mean(j2) + 0.25 * tf.reduce_mean(j4)
    grads = tape.gradient(loss, tiny.trainable_weights)
    missing = [w.name for w, g in zip(tiny.trainable_weights, grads) if g is None]
    assert not missing


def test_default_size_matches_the_paper_and_registry():
    model = build_model("msdehazenet")
    assert MODELS["msdehazenet"] is MSDehazeNet
    assert model.count_params() == 1_570_881  # paper: 1.57M
    assert [o.shape[1:] for o in model(tf.zeros((1, 32, 32, 3)))] == [(32, 32, 3), (16, 16, 3), (8, 8, 3)]


def test_count_macs_on_known_layers():
    inp = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(8, 3, padding="same")(inp)  # 16*16*8*27 = 55,296
    y = keras.layers.DepthwiseConv2D(3, padding="same")(y)  # 16*16*8*9 = 18,432
    y = keras.layers.Conv2DTranspose(4, 2, strides=2)(y)  # 16*16*8*4*4 = 32,768
    y = keras.layers.Dense(5)(y)  # 32*32*4*5 = 20,480
    model = keras.Model(inp, y)
    total, per_layer = count_macs(model, (16, 16, 3), by_layer=True)
    assert total == 55_296 + 18_432 + 32_768 + 20_480
    assert per_layer[model.layers[1].name] == 55_296
    attn = WindowAttention(8, 2)
    qkv_in = keras.Input((16, 16, 24))
    attn_model = keras.Model(qkv_in, attn(qkv_in))
    n_windows, n, bias_mlp = 4, 64, 64 * 64 * (2 * 256 + 256 * 2)
    assert count_macs(attn_model, (16, 16, 24)) == 2 * n_windows * 2 * n * n * 4 + bias_mlp


# --------------------------------------------------------------------------- edge


def test_tflite_builtin_ops_only_and_parity(tmp_path):
    model = MSDehazeNet(**TINY, input_shape=(64, 64, 3), batch_size=1)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flat = converter.convert()
    path = tmp_path / "msdehazenet.tflite"
    path.write_bytes(flat)

    from keras_dehaze.edge import flatbuffer as tflite_model, gpu_compat

    info = tflite_model.load_model_info(flat)
    ops = collections.Counter(op.name for sg in info.subgraphs for op in sg.ops)
    assert not [name for name in ops if name.startswith("Flex") or "CUSTOM" in name], ops
    assert not any(op.is_custom for sg in info.subgraphs for op in sg.ops)
    report = gpu_compat.check_gpu_compatibility(str(path))
    print("TFLite ops:", dict(sorted(ops.items())))
    print(report.format())

    from ai_edge_litert.interpreter import Interpreter  # the project's runtime (ai-edge-litert)

    interpreter = Interpreter(model_content=flat)
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).uniform(size=(1, 64, 64, 3)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    by_size = {d["shape"][1]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    for ref in model(x, training=False):
        np.testing.assert_allclose(by_size[ref.shape[1]], ref.numpy(), atol=1e-4)
