"""CORUN's unfolding steps (keras_dehaze/layers/unfolding.py): TGDM and SGDM are the closed-form
minimisers of their quadratic objectives (gradient 0 there), match the reference code's formula,
and recover J / T from exact synthetic data; ConstantMap is CORUN's T0."""

import math

import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.layers import ConstantMap, SceneStep, TransmissionStep
from keras_dehaze.layers.unfolding import SIGMOID_0_3
from keras_dehaze.losses.corun_loss import rehaze
from tests.layer_testing import run_layer_test


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
