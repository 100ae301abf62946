"""CORUN, the network (keras_dehaze/models/corun.py): presets, any input size, stage wiring,
gradients, saving, TFLite. Its layers, loss and haze synthesis are tested in tests/layers
(test_unfolding.py, test_cpmm.py), tests/losses/test_corun_loss.py and
tests/physics/test_corun_haze.py. Network tests use the compact preset (built once per module).
"""

import numpy as np
import pytest

from keras_dehaze.backend import keras, tf
from keras_dehaze.layers.unfolding import SIGMOID_0_3
from keras_dehaze.losses.corun_loss import CORUNLoss
from keras_dehaze.models import CORUN, CORUN_PRESETS, MODELS, build_model, corun_from_preset
from tests.layer_testing import run_model_saving_test
from tests.layers.test_cpmm import mst_params

RNG = np.random.default_rng(0)


def _u(shape, lo=0.0, hi=1.0):
    return tf.constant(RNG.uniform(lo, hi, shape), tf.float32)


# --------------------------------------------------------------------------- CORUN


@pytest.fixture(scope="module")
def compact():
    return corun_from_preset("corun_compact", return_transmission=True)


def test_parameter_counts_of_the_presets(compact):
    ref = build_model("corun")
    assert ref.count_params() == CORUN_PRESETS["corun"]["metadata"]["params"] == 18_674_262
    assert ref.count_params() == 3 * mst_params(1) + 4 * mst_params(3) + 8  # 3 T-CPMM, 4 S-CPMM, 8 lambdas
    assert abs(ref.count_params() - 18.67e6) / 18.67e6 < 0.05
    assert compact.count_params() == CORUN_PRESETS["corun_compact"]["metadata"]["params"] == 1_381_866
    assert set(MODELS) >= {"corun", "corun_compact"}


@pytest.mark.parametrize("size", [(45, 70), (3, 5)])
def test_any_input_size_outputs_in_range(compact, size):
    x = _u((1, *size, 3))
    dehazed, t = compact(x, training=False)
    assert dehazed.shape == (1, *size, 3) and t.shape == (1, *size, 1)
    assert 0.0 <= float(tf.reduce_min(dehazed)) and float(tf.reduce_max(dehazed)) <= 1.0
    assert 0.05 - 1e-6 <= float(tf.reduce_min(t)) and float(tf.reduce_max(t)) <= 0.999 + 1e-6


def test_stage_structure_and_per_stage_trainable_lambdas(compact):
    names = {layer.name for layer in compact.layers}
    assert {f"t_cpmm_{k}" for k in (1, 2, 3)} <= names and "t_cpmm_4" not in names  # none in the last stage
    assert {f"s_cpmm_{k}" for k in (1, 2, 3, 4)} <= names
    lambdas = [w for w in compact.trainable_weights if "step_lambda" in w.name]
    assert len(lambdas) == 8 and len({id(w) for w in lambdas}) == 8
    assert sorted(w.name.split("/")[0] for w in lambdas) == sorted(
        [f"tgdm_{k}" for k in range(1, 5)] + [f"sgdm_{k}" for k in range(1, 5)]
    )
    np.testing.assert_allclose([float(w) for w in lambdas], SIGMOID_0_3, rtol=1e-6)


def test_wiring_follows_the_reference_stage_order():
    """Basic_block_fix_Plus.forward: T^ from J^_{k-1}, T_{k-1}; T-CPMM([T^, J_{k-1}]);
    SGDM uses T^ (not the refined T); S-CPMM([J^, T^]); last stage T_K = T^_K."""
    model = CORUN(stages=3, width=4, levels=1, return_transmission=True)
    x = _u((1, 6, 8, 3))
    hazy, t = x, tf.fill((1, 6, 8, 1), 0.5)
    scene = scene_hat = hazy
    for k in (1, 2, 3):
        t_hat = model.get_layer(f"tgdm_{k}")([hazy, scene_hat, t])
        t = model.get_layer(f"t_cpmm_{k}")([t_hat, scene]) if k < 3 else t_hat
        scene_hat = model.get_layer(f"sgdm_{k}")([hazy, t_hat, scene])
        scene = model.get_layer(f"s_cpmm_{k}")([scene_hat, t_hat])
    dehazed, t_out = model(x, training=True)
    np.testing.assert_allclose(dehazed.numpy(), scene.numpy(), atol=1e-5)
    np.testing.assert_allclose(t_out.numpy(), t_hat.numpy(), atol=1e-6)
    single = CORUN(stages=1, width=4, levels=1)  # default: one output, a drop-in dehazer
    assert not isinstance(single.output, list) and single.output_shape == (None, None, None, 3)


def test_gradient_of_the_corun_loss_reaches_every_weight(compact):
    x, gt = _u((1, 16, 16, 3)), _u((1, 16, 16, 3))
    loss_fn = CORUNLoss(contrastive_weight=0.0)
    with tf.GradientTape() as tape:
        dehazed, t = compact(x, training=True)
        loss = tf.reduce_mean(loss_fn(dehazed, t, gt, x))
    grads = tape.gradient(loss, compact.trainable_weights)
    missing = [w.name for w, g in zip(compact.trainable_weights, grads) if g is None]
    assert not missing
    for w, g in zip(compact.trainable_weights, grads):
        if "step_lambda" in w.name:
            assert float(tf.abs(g)) > 0, w.name


def test_save_load_round_trip(tmp_path):
    model = CORUN(stages=2, width=4, levels=1, num_blocks=2, lambda_parametrization="sigmoid")
    restored = run_model_saving_test(model, _u((1, 12, 20, 3)), tmp_path)
    assert restored.get_layer("tgdm_1").lambda_parametrization == "sigmoid"


@pytest.mark.slow  # ~20 s of .keras I/O for the 1.4M-parameter preset (run: pytest -m slow)
def test_save_load_round_trip_of_the_compact_preset(compact, tmp_path):
    x = _u((1, 12, 20, 3))
    path = str(tmp_path / "corun_compact.keras")
    expected = [o.numpy() for o in compact(x, training=False)]
    compact.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    for got, want in zip(restored(x, training=False), expected):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_tflite_builtin_ops_only_and_gpu_delegate_check(compact):
    """Batch-1, fixed-size trace of the compact preset (static shapes everywhere, as a batch-1
    rebuild gives): builtin ops only, tensors <= 4-D, GPU-delegate rules, parity with Keras."""
    from keras_dehaze.edge import flatbuffer as tflite_model, gpu_compat

    fn = tf.function(lambda v: compact(v, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, 32, 48, 3], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no SELECT_TF_OPS
    flat = converter.convert()

    info = tflite_model.load_model_info(flat)
    print("CORUN compact TFLite ops:", dict(sorted(info.op_histogram().items())))
    assert not info.flex_ops() and not info.custom_ops()
    assert all(t.rank <= 4 for sg in info.subgraphs for t in sg.tensors)
    report = gpu_compat.check_gpu_compatibility(flat)
    print(report.format())
    assert report.compatible, report.format()

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flat)
    interpreter.allocate_tensors()
    x = RNG.uniform(size=(1, 32, 48, 3)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = {d["shape"][-1]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    dehazed, t = compact(x, training=False)
    np.testing.assert_allclose(got[3], dehazed.numpy(), atol=1e-4)
    np.testing.assert_allclose(got[1], t.numpy(), atol=1e-4)


