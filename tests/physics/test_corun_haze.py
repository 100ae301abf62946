"""CORUN's haze synthesis (keras_dehaze/physics/corun_haze.py): the transmission law, the ASM and
the reference parameter ranges, seeded random haze."""

import math

import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.physics import corun_haze


RNG = np.random.default_rng(0)


def _u(shape, lo=0.0, hi=1.0):
    return tf.constant(RNG.uniform(lo, hi, shape), tf.float32)


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
