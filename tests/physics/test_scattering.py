"""Tests for the batched TF scattering ops and rehazy generation (synthetic data only)."""

import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.physics import scattering as sc


def _batch(b=2, h=8, w=6, seed=0):
    """Random clean images, depths, airlights [B] and betas [B] as float32 numpy arrays."""
    rng = np.random.default_rng(seed)
    clear = rng.uniform(size=(b, h, w, 3)).astype(np.float32)
    depth = rng.uniform(0.0, 5.0, size=(b, h, w, 1)).astype(np.float32)
    airlight = rng.uniform(0.7, 1.0, size=(b,)).astype(np.float32)
    beta = rng.uniform(0.1, 1.0, size=(b,)).astype(np.float32)
    return clear, depth, airlight, beta


def _asm(clear, depth, airlight, beta):
    """NumPy closed form of the ASM, airlight [B] or [B, 3]."""
    t = np.exp(-beta.reshape(-1, 1, 1, 1) * depth)
    a = airlight.reshape(len(airlight), 1, 1, -1)
    return clear * t + a * (1.0 - t)


def test_transmission_closed_form():
    _, depth, _, beta = _batch()
    t = sc.transmission(depth, beta).numpy()
    np.testing.assert_allclose(t, np.exp(-beta[:, None, None, None] * depth), rtol=1e-6)
    np.testing.assert_allclose(sc.transmission(depth, 0.5).numpy(), np.exp(-0.5 * depth), rtol=1e-6)


def test_synthesize_haze_closed_form_scalar_and_per_channel_airlight():
    clear, depth, airlight, beta = _batch()
    out = sc.synthesize_haze(clear, depth, airlight, beta)
    assert out.shape == clear.shape and out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), _asm(clear, depth, airlight, beta), atol=1e-6)
    a3 = np.array([[0.8, 0.9, 1.0], [0.7, 0.75, 0.8]], np.float32)
    out3 = sc.synthesize_haze(clear, depth, a3, beta)
    np.testing.assert_allclose(out3.numpy(), _asm(clear, depth, a3, beta), atol=1e-6)
    assert 0.0 <= out3.numpy().min() and out3.numpy().max() <= 1.0


def test_rehazy_eq6_equals_asm_with_larger_beta():
    clear, depth, airlight, beta0 = _batch(b=3)
    delta_beta = np.array([0.1, 0.3, 0.5], np.float32)
    hazy0 = sc.synthesize_haze(clear, depth, airlight, beta0)
    rehazed = sc.rehazy(hazy0, depth, airlight, delta_beta)
    direct = sc.synthesize_haze(clear, depth, airlight, beta0 + delta_beta)
    np.testing.assert_allclose(rehazed.numpy(), direct.numpy(), atol=1e-6)


def test_rehazy_eq6_per_channel_airlight():
    clear, depth, _, beta0 = _batch()
    a3 = np.array([[0.8, 0.9, 1.0], [0.7, 0.75, 0.8]], np.float32)
    hazy0 = sc.synthesize_haze(clear, depth, a3, beta0)
    rehazed = sc.rehazy(hazy0, depth, a3, 0.2)
    np.testing.assert_allclose(rehazed.numpy(), _asm(clear, depth, a3, beta0 + 0.2), atol=1e-6)


def test_rehazy_eq5_with_delta_airlight():
    clear, depth, airlight, beta0 = _batch()
    delta_beta = np.array([0.2, 0.4], np.float32)
    delta_a = np.array([0.05, -0.1], np.float32)
    t0 = sc.transmission(depth, beta0)
    hazy0 = sc.synthesize_haze(clear, depth, airlight, beta0)
    rehazed = sc.rehazy(hazy0, depth, airlight, delta_beta,
                        delta_airlight=delta_a, transmission0=t0)
    direct = sc.synthesize_haze(clear, depth, airlight + delta_a, beta0 + delta_beta)
    np.testing.assert_allclose(rehazed.numpy(), direct.numpy(), atol=1e-6)
    # Eq. 5 with delta_A = 0 reduces to Eq. 6.
    eq5 = sc.rehazy(hazy0, depth, airlight, delta_beta, delta_airlight=np.zeros(2, np.float32),
                    transmission0=t0)
    np.testing.assert_allclose(eq5.numpy(), sc.rehazy(hazy0, depth, airlight, delta_beta).numpy(),
                               atol=0)


def test_rehazy_eq5_requires_transmission0():
    clear, depth, airlight, beta0 = _batch()
    with pytest.raises(ValueError, match="transmission0"):
        sc.rehazy(clear, depth, airlight, 0.1, delta_airlight=0.05)


def test_rehazy_zero_delta_beta_is_identity():
    clear, depth, airlight, beta0 = _batch()
    hazy0 = sc.synthesize_haze(clear, depth, airlight, beta0)
    same = sc.rehazy(hazy0, depth, airlight, 0.0)
    np.testing.assert_allclose(same.numpy(), hazy0.numpy(), atol=0)


def test_gradients_flow_through_synthesize_haze():
    clear, depth, airlight, beta = _batch()
    clear_v = tf.Variable(clear)
    beta_v = tf.Variable(beta)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(sc.synthesize_haze(clear_v, depth, airlight, beta_v))
    g_clear, g_beta = tape.gradient(loss, [clear_v, beta_v])
    # dI/dJ = t, broadcast over channels.
    t = np.exp(-beta[:, None, None, None] * depth)
    np.testing.assert_allclose(g_clear.numpy(), np.broadcast_to(t, clear.shape), rtol=1e-5)
    assert g_beta is not None and np.all(np.isfinite(g_beta.numpy()))


def test_gradients_flow_inside_tf_function():
    clear, depth, airlight, beta = _batch()
    clear_v = tf.Variable(clear)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            hazy = sc.synthesize_haze(clear_v, depth, airlight, beta)
            out = sc.rehazy(hazy, depth, airlight, tf.constant([0.1, 0.2]))
            loss = tf.reduce_mean(out)
        return tape.gradient(loss, clear_v)

    assert np.all(step().numpy() > 0.0)


def test_sample_haze_params_deterministic_and_in_range():
    a1, b1 = sc.sample_haze_params(64, (0.7, 1.0), (0.6, 1.8), seed=[1, 2])
    a2, b2 = sc.sample_haze_params(64, (0.7, 1.0), (0.6, 1.8), seed=tf.constant([1, 2]))
    a3, _ = sc.sample_haze_params(64, (0.7, 1.0), (0.6, 1.8), seed=[1, 3])
    assert a1.shape == (64,) and b1.shape == (64,) and a1.dtype == tf.float32
    np.testing.assert_array_equal(a1.numpy(), a2.numpy())
    np.testing.assert_array_equal(b1.numpy(), b2.numpy())
    assert not np.allclose(a1.numpy(), a3.numpy())
    assert np.all((a1.numpy() >= 0.7) & (a1.numpy() < 1.0))
    assert np.all((b1.numpy() >= 0.6) & (b1.numpy() < 1.8))
    # A and beta come from independent streams, not the same uniforms rescaled.
    u_a = (a1.numpy() - 0.7) / 0.3
    u_b = (b1.numpy() - 0.6) / 1.2
    assert not np.allclose(u_a, u_b, atol=1e-3)
    # An int seed is also deterministic; no seed uses the global RNG.
    first = sc.sample_haze_params(4, (0.8, 1.0), (0.01, 0.3), seed=7)
    again = sc.sample_haze_params(4, (0.8, 1.0), (0.01, 0.3), seed=7)
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    np.testing.assert_array_equal(first[1].numpy(), again[1].numpy())
    a_free, b_free = sc.sample_haze_params(16, (0.8, 1.0), (0.01, 0.3))
    assert np.all((a_free.numpy() >= 0.8) & (a_free.numpy() < 1.0))
    assert np.all((b_free.numpy() >= 0.01) & (b_free.numpy() < 0.3))


def test_sample_uniform_delta_beta_preset():
    lo, hi = sc.PRESETS["outdoor"]["delta_beta"]
    d = sc.sample_uniform(32, (lo, hi), seed=[3, 4]).numpy()
    np.testing.assert_array_equal(d, sc.sample_uniform(32, (lo, hi), seed=[3, 4]).numpy())
    assert np.all((d >= lo) & (d < hi))


def test_recover_clear_inverts_synthesize_haze():
    clear, depth, airlight, beta = _batch()
    depth = np.minimum(depth, 2.0)  # keep t = exp(-beta d) >= exp(-2) > t_min = 0.1
    hazy = sc.synthesize_haze(clear, depth, airlight, beta)
    t = sc.transmission(depth, beta)
    np.testing.assert_allclose(sc.recover_clear(hazy, t, airlight).numpy(), clear, atol=1e-5)
    a3 = np.array([[0.8, 0.9, 1.0], [0.7, 0.75, 0.8]], np.float32)
    hazy3 = sc.synthesize_haze(clear, depth, a3, beta)
    np.testing.assert_allclose(sc.recover_clear(hazy3, t, a3).numpy(), clear, atol=1e-5)


def test_recover_clear_clamps_small_transmission():
    hazy = np.full((1, 2, 2, 3), 0.9, np.float32)
    t = np.full((1, 2, 2, 1), 0.01, np.float32)
    out = sc.recover_clear(hazy, t, np.array([1.0], np.float32), t_min=0.1).numpy()
    np.testing.assert_allclose(out, (0.9 - 1.0) / 0.1 + 1.0, atol=1e-6)


def test_presets_match_spec():
    assert sc.PRESETS == {
        "indoor": dict(airlight=(0.7, 1.0), beta=(0.6, 1.8), delta_beta=(0.1, 0.5)),
        "outdoor": dict(airlight=(0.8, 1.0), beta=(0.01, 0.3), delta_beta=(0.01, 0.15)),
    }


def test_package_reexports():
    import keras_dehaze.physics as physics

    for name in physics.__all__:
        assert hasattr(physics, name)
