"""Tests for the dark channel prior baseline and haze-parameter helpers (synthetic data only)."""

import numpy as np
import pytest

from keras_dehaze.physics.dcp import (
    dark_channel,
    dehaze_dcp,
    depth_from_transmission,
    estimate_airlight,
    estimate_transmission,
    guided_filter,
    parse_sots_outdoor_name,
    recover_transmission_from_pair,
)

AIRLIGHT = np.array([0.85, 0.9, 0.95], np.float32)


def _scene(h=128, w=128, seed=0):
    """Textured clear image obeying the prior, a smooth t map (0.02..0.9) and its hazy image.

    Every pixel has one colour channel at 0, so dark(J) = 0 for any patch; the densest corner
    (t ~ 0.02) is where DCP looks for the airlight.
    """
    rng = np.random.default_rng(seed)
    clear = rng.uniform(0.0, 0.8, (h, w, 3)).astype(np.float32)
    clear[np.arange(h)[:, None], np.arange(w)[None, :], rng.integers(0, 3, (h, w))] = 0.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (0.9 - 0.88 * (0.6 * yy / (h - 1) + 0.4 * xx / (w - 1))).astype(np.float32)
    hazy = clear * t[..., None] + AIRLIGHT * (1.0 - t[..., None])
    return clear, t, hazy


def _psnr(x, y):
    return 10.0 * np.log10(1.0 / np.mean((np.asarray(x, np.float64) - y) ** 2))


def _erode(x, patch):
    """Brute-force min filter with the window clipped to the image."""
    r = patch // 2
    h, w = x.shape
    return np.array([[x[max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].min()
                      for j in range(w)] for i in range(h)])


def test_dark_channel_matches_brute_force_and_prior():
    clear, _, hazy = _scene(40, 36)
    np.testing.assert_array_equal(dark_channel(clear, 7), 0.0)
    np.testing.assert_allclose(dark_channel(hazy, 7), _erode(hazy.min(axis=2), 7), atol=0)


def test_airlight_close_to_truth():
    _, _, hazy = _scene()
    dark = dark_channel(hazy)
    for mode in ("mean", "max"):
        est = estimate_airlight(hazy, dark, mode=mode)
        assert est.shape == (3,)
        np.testing.assert_allclose(est, AIRLIGHT, atol=0.04)


def test_raw_transmission_matches_closed_form():
    _, t, hazy = _scene()
    omega, patch = 0.95, 15
    raw = estimate_transmission(hazy, AIRLIGHT, omega=omega, patch=patch)
    # dark(J) = 0, so dark(I / A) = min over the patch of (1 - t): exact up to float error.
    np.testing.assert_allclose(raw, 1.0 - omega * _erode(1.0 - t, patch), atol=1e-5)
    # t is smooth, so pointwise it is close to 1 - omega * (1 - t).
    np.testing.assert_allclose(raw, 1.0 - omega * (1.0 - t), atol=0.05)


@pytest.mark.parametrize("refine", [False, True])
def test_dehaze_dcp_improves_psnr(refine):
    clear, t, hazy = _scene()
    out, t_est, airlight = dehaze_dcp(hazy, refine=refine)
    assert out.shape == hazy.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert t_est.shape == t.shape
    np.testing.assert_allclose(airlight, AIRLIGHT, atol=0.04)
    assert np.abs(t_est - t).mean() < 0.1
    assert _psnr(out, clear) > _psnr(hazy, clear) + 5.0


def test_dehaze_dcp_small_image_runs():
    _, _, hazy = _scene(20, 24)
    out, t_est, _ = dehaze_dcp(hazy)
    assert out.shape == hazy.shape and t_est.shape == (20, 24)
    assert np.isfinite(out).all()


def _guided_brute(guide, src, r, eps):
    """Reference guided filter: explicit per-window statistics, windows clipped to the image."""
    h, w = src.shape

    def win(i, j):
        return slice(max(0, i - r), i + r + 1), slice(max(0, j - r), j + r + 1)

    a = np.zeros((h, w))
    b = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            g, p = guide[win(i, j)], src[win(i, j)]
            a[i, j] = (np.mean(g * p) - g.mean() * p.mean()) / (g.var() + eps)
            b[i, j] = p.mean() - a[i, j] * g.mean()
    mean_a = np.array([[a[win(i, j)].mean() for j in range(w)] for i in range(h)])
    mean_b = np.array([[b[win(i, j)].mean() for j in range(w)] for i in range(h)])
    return mean_a * guide + mean_b


@pytest.mark.parametrize("radius,eps", [(1, 1e-3), (3, 1e-2), (50, 1e-3)])
def test_guided_filter_matches_brute_force(radius, eps):
    rng = np.random.default_rng(1)
    guide_rgb = rng.uniform(size=(13, 11, 3))
    src = rng.uniform(size=(13, 11))
    expected = _guided_brute(guide_rgb.mean(axis=2), src, radius, eps)
    np.testing.assert_allclose(guided_filter(guide_rgb, src, radius, eps), expected, atol=1e-5)


def test_guided_filter_preserves_edges():
    guide = np.zeros((32, 32), np.float32)
    guide[:, 16:] = 1.0
    out = guided_filter(guide, guide, radius=4, eps=1e-4)
    np.testing.assert_allclose(out, guide, atol=1e-3)


def test_recover_transmission_from_pair():
    clear, t, hazy = _scene(48, 40, seed=3)
    clear[:4, :4] = AIRLIGHT  # sky-like pixels: J = A carries no information about t
    hazy = clear * t[..., None] + AIRLIGHT * (1.0 - t[..., None])
    t_rec, mask = recover_transmission_from_pair(hazy, clear, AIRLIGHT)
    assert t_rec.shape == t.shape and mask.dtype == bool
    assert not mask[:4, :4].any() and mask.sum() == mask.size - 16
    np.testing.assert_allclose(t_rec[mask], t[mask], atol=1e-4)
    assert t_rec.min() > 0.0 and t_rec.max() <= 1.0
    # Round trip to depth: -ln(t) / beta gives beta * d / beta.
    d = depth_from_transmission(t_rec)
    np.testing.assert_allclose(d[mask], -np.log(t[mask]), atol=1e-3)


def test_recover_transmission_from_jpeg_like_noise_stays_in_range():
    clear, t, hazy = _scene(32, 32, seed=4)
    noisy = np.clip(np.round(hazy * 255) / 255, 0, 1)
    t_rec, mask = recover_transmission_from_pair(noisy, clear, AIRLIGHT)
    assert np.all((t_rec > 0) & (t_rec <= 1))
    assert np.abs(t_rec[mask] - t[mask]).mean() < 0.02


def test_depth_from_transmission_clips():
    d = depth_from_transmission(np.array([1.0, 0.5, 0.0, 2.0]), eps=1e-3)
    np.testing.assert_allclose(d, [0.0, np.log(2.0), -np.log(1e-3), 0.0], rtol=1e-6, atol=1e-7)


def test_parse_sots_outdoor_name():
    assert parse_sots_outdoor_name("0001_0.8_0.2.jpg") == ("0001", 0.8, 0.2)
    assert parse_sots_outdoor_name("/data/sots/outdoor/hazy/1402_1_0.04.png") == ("1402", 1.0, 0.04)
    with pytest.raises(ValueError):
        parse_sots_outdoor_name("0001.png")
    with pytest.raises(ValueError):
        parse_sots_outdoor_name("0001_a_b.jpg")
