"""CORUN: the unfolding steps (TGDM/SGDM), the CPMM transformer, the network, its loss and haze.

The step tests check the algebra: each step is the closed-form minimiser of its quadratic
objective (gradient 0 there), matches the reference code's formula, and recovers J / T from
exact synthetic data. Network tests use the compact preset (built once per module).
"""

import math

import numpy as np
import pytest

from keras_dehaze.backend import keras, tf
from keras_dehaze.layers import (
    CPMM,
    ConstantMap,
    SceneStep,
    SpectralAttention,
    SpectralTransformerBlock,
    TransmissionStep,
)
from keras_dehaze.layers.unfolding import SIGMOID_0_3
from keras_dehaze.losses.corun_loss import CORUNLoss, rehaze
from keras_dehaze.models import CORUN, CORUN_PRESETS, MODELS, build_model, corun_from_preset
from keras_dehaze.physics import corun_haze
from tests.layer_testing import run_layer_test, run_model_saving_test

RNG = np.random.default_rng(0)


def _u(shape, lo=0.0, hi=1.0):
    return tf.constant(RNG.uniform(lo, hi, shape), tf.float32)


def _tgdm_reference(p, j_hat, t_prev, lam, eps=1e-7):
    """The reference code's ProximalTransmissionBlock, literally, in float64 NumPy."""
    p, j_hat, t_prev = (np.asarray(a, np.float64) for a in (p, j_hat, t_prev))
    stored = 1.0 - j_hat
    stored = np.where(stored == 0, eps, stored)
    f1 = np.sum(1.0 - p + lam * t_prev / stored, axis=-1, keepdims=True)
    f2 = np.sum(1.0 - j_hat + lam / stored, axis=-1, keepdims=True)
    f2 = np.where(f2 == 0, eps, f2)
    return np.clip(f1 / f2, 0.05, 0.999)


def _set_lambda(layer, value):
    layer.step_lambda.assign(value)


# --------------------------------------------------------------------------- TGDM / SGDM


def test_lambda_init_is_sigmoid_0_3_in_both_parametrizations():
    args = [_u((1, 4, 4, 3)), _u((1, 4, 4, 3)), _u((1, 4, 4, 1))]
    direct, sig = TransmissionStep(), TransmissionStep(lambda_parametrization="sigmoid")
    direct(args), sig(args)
    assert SIGMOID_0_3 == pytest.approx(1 / (1 + math.exp(-0.3)))
    assert float(direct.step_lambda) == pytest.approx(SIGMOID_0_3)  # reference: weight = value
    assert float(sig.step_lambda) == pytest.approx(0.3, abs=1e-6)  # raw 0.3, used through sigmoid
    assert float(sig.effective_lambda) == pytest.approx(SIGMOID_0_3, abs=1e-6)
    np.testing.assert_allclose(direct(args).numpy(), sig(args).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="lambda_parametrization"):
        SceneStep(lambda_parametrization="softplus")


def test_tgdm_matches_the_reference_formula_including_white_pixels():
    p, j_hat, t_prev = _u((2, 6, 7, 3)), _u((2, 6, 7, 3)), _u((2, 6, 7, 1), 0.05, 1.0)
    j_hat = tf.tensor_scatter_nd_update(j_hat, [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1], [0, 1, 1, 2]], [1.0] * 4)
    layer = TransmissionStep()
    got = layer([p, j_hat, t_prev]).numpy()
    np.testing.assert_allclose(got, _tgdm_reference(p, j_hat, t_prev, SIGMOID_0_3), rtol=1e-5, atol=1e-6)
    assert got.shape == (2, 6, 7, 1)


def test_tgdm_is_the_minimiser_of_its_channel_weighted_objective():
    """T^ = argmin_T sum_c (1/u_c) [((1 - P^c) - T u_c)^2 + lam (T - T_prev)^2], u = 1 - J^."""
    p, j_hat, t_prev = _u((1, 5, 6, 3)), _u((1, 5, 6, 3), 0.0, 0.9), _u((1, 5, 6, 1))
    layer = TransmissionStep(t_min=-1e9, t_max=1e9)  # unclamped: the pure minimiser
    t_star = tf.Variable(tf.cast(layer([p, j_hat, t_prev]), tf.float64))
    lam = tf.constant(SIGMOID_0_3, tf.float64)
    p64, u, tp = tf.cast(p, tf.float64), 1.0 - tf.cast(j_hat, tf.float64), tf.cast(t_prev, tf.float64)

    def objective(t):
        return tf.reduce_sum((((1.0 - p64) - t * u) ** 2 + lam * (t - tp) ** 2) / u)

    with tf.GradientTape() as tape:
        e = objective(t_star)
    grad = tape.gradient(e, t_star).numpy()
    curvature = tf.reduce_sum(2 * (u + lam / u), axis=-1, keepdims=True).numpy()
    assert np.max(np.abs(grad) / curvature) < 1e-6  # |dT| to the stationary point, per pixel
    for delta in (1e-3, -1e-3):  # and it is a minimum
        assert float(objective(t_star + delta)) > float(e)
    # The UNweighted least squares over channels has a different solution: the weights matter.
    num = tf.reduce_sum((1 - p64) * u, -1, keepdims=True) + 3 * lam * tp
    ls = num / (tf.reduce_sum(u * u, -1, keepdims=True) + 3 * lam)
    assert np.max(np.abs(ls.numpy() - t_star.numpy())) > 1e-3


def test_sgdm_is_the_minimiser_of_its_objective():
    """J^ = argmin_J ||P - J T - 1 + T||^2 + lam ||J - J_prev||^2 (per pixel and channel)."""
    p, t, j_prev = _u((1, 5, 6, 3)), _u((1, 5, 6, 1), 0.05, 1.0), _u((1, 5, 6, 3))
    layer = SceneStep(clip=False)
    j_star = tf.Variable(tf.cast(layer([p, t, j_prev]), tf.float64))
    lam = tf.constant(SIGMOID_0_3, tf.float64)
    p64, t64, jp = (tf.cast(a, tf.float64) for a in (p, t, j_prev))

    def objective(j):
        return tf.reduce_sum((p64 - j * t64 - 1.0 + t64) ** 2 + lam * (j - jp) ** 2)

    with tf.GradientTape() as tape:
        e = objective(j_star)
    grad = tape.gradient(e, j_star).numpy()
    assert np.max(np.abs(grad) / (2 * (t64 * t64 + lam)).numpy()) < 1e-6
    assert float(objective(j_star + 1e-3)) > float(e) and float(objective(j_star - 1e-3)) > float(e)
    expected = (t * p + t * t - t + SIGMOID_0_3 * j_prev) / (t * t + SIGMOID_0_3)
    np.testing.assert_allclose(j_star.numpy(), expected.numpy(), rtol=1e-5)
    assert float(tf.reduce_max(SceneStep()([p * 3, t, j_prev]))) <= 1.0  # clipped by default


def test_steps_recover_exact_synthetic_data():
    """P = J T + 1 - T: with lam -> 0 the steps give T and J back; with any lam, (J, T) is a fixed point."""
    j, t = _u((2, 8, 8, 3), 0.0, 0.9), _u((2, 8, 8, 1), 0.1, 0.95)
    p = rehaze(j, t)
    tgdm, sgdm = TransmissionStep(), SceneStep()
    rough_t, rough_j = tf.fill(tf.shape(t), 0.5), tf.zeros_like(j)
    tgdm([p, j, rough_t]), sgdm([p, t, rough_j])
    for lam in (0.0, 1e-7):
        _set_lambda(tgdm, lam), _set_lambda(sgdm, lam)
        np.testing.assert_allclose(tgdm([p, j, rough_t]).numpy(), t.numpy(), atol=1e-5)
        np.testing.assert_allclose(sgdm([p, t, rough_j]).numpy(), j.numpy(), atol=1e-4)
    _set_lambda(tgdm, 2.0), _set_lambda(sgdm, 2.0)  # with lam > 0 the true pair is a fixed point
    np.testing.assert_allclose(tgdm([p, j, t]).numpy(), t.numpy(), atol=1e-5)
    np.testing.assert_allclose(sgdm([p, t, j]).numpy(), j.numpy(), atol=1e-5)
    assert np.abs(tgdm([p, j, rough_t]).numpy() - t.numpy()).max() > 1e-2  # lam really pulls to T_prev


def test_tgdm_stays_finite_in_float16_on_white_pixels():
    """u = 1 - J^ = 0 -> eps: the reference form would compute lam/eps = 5.7e6 (inf in fp16)."""
    p = tf.concat([tf.ones((1, 2, 4, 3)), _u((1, 2, 4, 3))], axis=1)
    args = [p, p, tf.fill((1, 4, 4, 1), 0.5)]
    t32 = TransmissionStep()(args).numpy()
    t16 = TransmissionStep(dtype="float16")([tf.cast(a, tf.float16) for a in args]).numpy()
    assert np.isfinite(t16).all()
    np.testing.assert_allclose(t16.astype(np.float32), t32, atol=5e-3)
    np.testing.assert_allclose(t32[:, :2], 0.5, atol=1e-6)  # white pixels keep T_prev


def test_step_layer_contracts():
    p, j, t = _u((2, 5, 6, 3)), _u((2, 5, 6, 3)), _u((2, 5, 6, 1), 0.1, 0.9)
    run_layer_test(TransmissionStep(t_min=0.1, t_max=0.9, eps=1e-6), [p, j, t], (2, 5, 6, 1), 1)
    run_layer_test(SceneStep(lambda_parametrization="sigmoid"), [p, t, j], (2, 5, 6, 3), 1)
    out = run_layer_test(ConstantMap(0.25, channels=2), p, (2, 5, 6, 2), 0)
    np.testing.assert_array_equal(out.numpy(), 0.25)
    fn = tf.function(lambda x: ConstantMap(0.5)(x), input_signature=[tf.TensorSpec([None, None, None, 3])])
    assert fn(p).shape == (2, 5, 6, 1)


# --------------------------------------------------------------------------- CPMM


def _ms_msa_reference(layer, x):
    """The reference MS_MSA forward in NumPy (heads, L2 over pixels, attn = K Q^T, softmax, attn V)."""
    b, h, w, c = x.shape
    heads = layer.num_heads
    d = c // heads
    xf = x.numpy().reshape(b * h * w, c).astype(np.float64)
    kernel = lambda conv: conv.kernel.numpy()[0, 0].astype(np.float64)  # noqa: E731
    q, k, v = xf @ kernel(layer.to_q), xf @ kernel(layer.to_k), xf @ kernel(layer.to_v)
    out = np.zeros_like(q)
    for i in range(heads):
        sl = slice(i * d, (i + 1) * d)
        qh, kh, vh = q[:, sl].T, k[:, sl].T, v[:, sl].T  # [d, hw]
        qh = qh / np.maximum(np.linalg.norm(qh, axis=-1, keepdims=True), 1e-12)
        kh = kh / np.maximum(np.linalg.norm(kh, axis=-1, keepdims=True), 1e-12)
        attn = (kh @ qh.T) * layer.rescale.numpy()[i]
        attn = np.exp(attn - attn.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        out[:, sl] = (attn @ vh).T
    out = out @ kernel(layer.proj) + layer.proj.bias.numpy()
    v_map = tf.constant(v.reshape(b, h, w, c), tf.float32)
    pos = layer.pos_conv2(tf.nn.gelu(layer.pos_conv1(v_map), approximate=False)).numpy()
    return out.reshape(b, h, w, c) + pos


def test_spectral_attention_matches_the_reference_math():
    x = _u((1, 5, 6, 8), -1, 1)
    layer = SpectralAttention(num_heads=2)
    layer(x)
    for wgt in layer.weights:  # non-trivial weights, incl. per-head rescale
        wgt.assign(RNG.normal(0, 0.5, wgt.shape))
    np.testing.assert_allclose(layer(x).numpy(), _ms_msa_reference(layer, x), atol=1e-4)
    single = SpectralAttention(num_heads=1)
    single(x)
    np.testing.assert_allclose(single(x).numpy(), _ms_msa_reference(single, x), atol=1e-4)
    with pytest.raises(ValueError, match="divisible"):
        SpectralAttention(num_heads=3)(x)


def test_transformer_block_and_cpmm_contracts():
    x = _u((2, 8, 8, 8))
    # attention: q, k, v, proj (kernel + bias), 2 depthwise, rescale = 8; + ffn 3 + norm 2 = 13
    run_layer_test(SpectralAttention(num_heads=2), x, (2, 8, 8, 8), 8)
    run_layer_test(SpectralTransformerBlock(num_heads=2, ffn_expansion=2), x, (2, 8, 8, 8), 13)
    t_hat, scene = _u((2, 8, 12, 1)), _u((2, 8, 12, 3))
    run_layer_test(CPMM(width=4, levels=2), [t_hat, scene], (2, 8, 12, 1))
    run_layer_test(CPMM(width=4, levels=1, num_blocks=2), [scene, t_hat], (2, 8, 12, 3))
    with pytest.raises(ValueError, match="even"):
        CPMM(width=5)


def _mst_params(out, width=30, levels=3):
    """Parameter count of the reference MST(in_dim=4, out_dim, dim=width, stage=levels, [1]*...)."""
    block = lambda d, heads: 12 * d * d + 57 * d + heads  # noqa: E731  MS_MSA + PreNorm(FFN)
    n = 4 * width * 9  # embedding
    for i in range(levels):
        d = width * 2**i
        n += block(d, 2**i) + d * (d // 2) * 9  # encoder block + downsample conv
        n += (2 * d) * (4 * d) * 9 + 2 * d * d + block(d, 2**i)  # upsample conv, fusion, decoder
    return n + block(width * 2**levels, 2**levels) + width * out * 9  # bottleneck + mapping


def test_cpmm_parameter_count_follows_the_reference_layout():
    for out, width, levels in ((1, 8, 3), (3, 8, 3), (3, 6, 2)):
        layer = CPMM(width=width, levels=levels)
        layer([tf.zeros((1, 8, 8, out)), tf.zeros((1, 8, 8, 4 - out))])
        assert layer.count_params() == _mst_params(out, width, levels)
    assert (_mst_params(1), _mst_params(3)) == (2_667_442, 2_667_982)


# --------------------------------------------------------------------------- CORUN


@pytest.fixture(scope="module")
def compact():
    return corun_from_preset("corun_compact", return_transmission=True)


def test_parameter_counts_of_the_presets(compact):
    ref = build_model("corun")
    assert ref.count_params() == CORUN_PRESETS["corun"]["metadata"]["params"] == 18_674_262
    assert ref.count_params() == 3 * _mst_params(1) + 4 * _mst_params(3) + 8  # 3 T-CPMM, 4 S-CPMM, 8 lambdas
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


# --------------------------------------------------------------------------- loss


@pytest.fixture(scope="module")
def corun_loss():
    return CORUNLoss(feature_extractor="hed_vgg16")


def test_loss_is_zero_for_the_exact_solution(corun_loss):
    gt, t = _u((2, 32, 32, 3)), _u((2, 32, 32, 1), 0.1, 0.9)
    hazy = rehaze(gt, t)
    value = corun_loss(gt, t, gt, hazy).numpy()
    assert value.shape == (2,)
    np.testing.assert_allclose(value, 0.0, atol=1e-6)


def test_loss_terms_and_weights(corun_loss):
    j, gt, t, hazy = _u((2, 32, 32, 3)), _u((2, 32, 32, 3)), _u((2, 32, 32, 1)), _u((2, 32, 32, 3))
    terms = corun_loss.terms(j, t, gt, hazy)
    np.testing.assert_allclose(terms["pixel"].numpy(), np.abs(j - gt).mean(axis=(1, 2, 3)), rtol=1e-5)
    recon = j.numpy() * t.numpy() + 1 - t.numpy()
    np.testing.assert_allclose(terms["asm"].numpy(), np.abs(recon - hazy).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(terms["contrastive"].numpy(), corun_loss.contrastive(j, gt, hazy).numpy(), rtol=1e-6)
    expected = terms["pixel"] + 0.01 * terms["asm"] + 0.2 * terms["contrastive"]
    np.testing.assert_allclose(corun_loss(j, t, gt, hazy).numpy(), expected.numpy(), rtol=1e-6)
    shared = CORUNLoss(contrastive=corun_loss.contrastive)
    assert shared.contrastive is corun_loss.contrastive and shared.get_config()["feature_extractor"] == "hed_vgg16"
    no_cr = CORUNLoss(contrastive_weight=0)
    assert no_cr.contrastive is None and set(no_cr.terms(j, t, gt, hazy)) == {"pixel", "asm"}


def test_loss_gradients_reach_image_and_transmission(corun_loss):
    j, gt, hazy = _u((2, 32, 32, 3)), _u((2, 32, 32, 3)), _u((2, 32, 32, 3))
    j, t = tf.Variable(j), tf.Variable(_u((2, 32, 32, 1), 0.1, 0.9))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(corun_loss(j, t, gt, hazy))
    dj, dt = tape.gradient(loss, [j, t])
    assert dj is not None and dt is not None
    assert float(tf.reduce_max(tf.abs(dj))) > 0 and float(tf.reduce_max(tf.abs(dt))) > 0
    assert np.isfinite(dj.numpy()).all() and np.isfinite(dt.numpy()).all()


# --------------------------------------------------------------------------- haze synthesis


def test_corun_transmission_law():
    disparity = tf.reshape(tf.linspace(3.0, 7.0, 16), (1, 4, 4, 1))  # any scale
    beta = tf.constant([1.5])
    t = corun_haze.corun_transmission(disparity, beta).numpy()
    d_norm = (disparity.numpy() - 3.0) / 4.0
    np.testing.assert_allclose(t, np.exp(-2 * 1.5 * (1 - d_norm)), rtol=1e-5)
    assert t.max() == pytest.approx(1.0) and t.min() == pytest.approx(math.exp(-3.0), rel=1e-5)


def test_synthesis_matches_the_asm_and_samples_reference_ranges():
    clear, disparity = _u((4, 8, 8, 3)), _u((4, 8, 8, 1))
    airlight, beta = corun_haze.sample_corun_haze_params(256, seed=3)
    assert airlight.shape == (256, 3) and beta.shape == (256,)
    assert 0.225 <= float(tf.reduce_min(airlight)) and float(tf.reduce_max(airlight)) <= 1.025
    assert 0.2 <= float(tf.reduce_min(beta)) and float(tf.reduce_max(beta)) <= 2.8
    spread = airlight - tf.reduce_mean(airlight, axis=1, keepdims=True)
    assert 0 < float(tf.reduce_max(tf.abs(spread))) <= 0.05  # per-channel jitter +-0.025
    hazy, t = corun_haze.synthesize_corun_haze(clear, disparity, airlight[:4], beta[:4])
    a = airlight[:4, None, None, :]
    np.testing.assert_allclose(hazy.numpy(), (clear * t + a * (1 - t)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.numpy(), corun_haze.corun_transmission(disparity, beta[:4]).numpy())


def test_random_corun_haze_is_seeded_and_in_range():
    clear, disparity = _u((4, 16, 16, 3)), _u((4, 16, 16, 1))
    a = corun_haze.random_corun_haze(clear, disparity, seed=7)
    b = corun_haze.random_corun_haze(clear, disparity, seed=7)
    for key in ("hazy", "transmission", "airlight", "beta"):
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    assert a["hazy"].shape == (4, 16, 16, 3) and a["transmission"].shape == (4, 16, 16, 1)
    assert 0.0 <= float(tf.reduce_min(a["hazy"])) and float(tf.reduce_max(a["hazy"])) <= 1.0
    assert a["clear"] is not None and np.array_equal(a["clear"].numpy(), clear.numpy())
    plain = corun_haze.random_corun_haze(clear, disparity, seed=7, degrade=False)
    expected, _ = corun_haze.synthesize_corun_haze(clear, disparity, plain["airlight"], plain["beta"])
    np.testing.assert_allclose(plain["hazy"].numpy(), np.clip(expected.numpy(), 0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="unknown"):
        corun_haze.random_corun_haze(clear, disparity, betta=(0, 1))
