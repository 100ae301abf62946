"""CORUN's loss (keras_dehaze/losses/corun_loss.py): zero at the exact solution, its terms and
weights, gradients to the image and the transmission."""

import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.losses.corun_loss import CORUNLoss, rehaze


RNG = np.random.default_rng(0)


def _u(shape, lo=0.0, hi=1.0):
    return tf.constant(RNG.uniform(lo, hi, shape), tf.float32)


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
