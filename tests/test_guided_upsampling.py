"""Guided upsampling: a network run at a working resolution, carried to full size."""

import cv2
import numpy as np
import pytest

from keras_dehaze import guided_upsampling as gu
from keras_dehaze.tiling import from_unit_float, to_unit_float


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))


def _hazy_scene(h=300, w=400, seed=0):
    """A textured clean image, a smooth transmission map and its hazy image (scattering model)."""
    rng = np.random.default_rng(seed)
    clean = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.0)
    clean = 0.15 + 0.7 * (clean - clean.min()) / (clean.max() - clean.min())
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (0.35 + 0.5 * (xx / w) * (0.6 + 0.4 * np.sin(yy / h * 3.0)))[..., None]
    airlight = np.array([0.9, 0.85, 0.8], np.float32)
    return clean, t, airlight, clean * t + airlight * (1 - t)


def test_scattering_model_inverted_at_low_resolution_restores_full_detail():
    clean, t, airlight, hazy = _hazy_scene()
    # An oracle "network": the exact inverse of the scattering model at whatever size it sees.
    def run(small):
        t_small = cv2.resize(t, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
        return (small - airlight) / t_small[..., None] + airlight

    out = gu.dehaze_large(hazy, run, max_pixels=hazy.shape[0] * hazy.shape[1] // 9)
    naive = cv2.resize(run(cv2.resize(hazy, (133, 100), interpolation=cv2.INTER_AREA)),
                       (400, 300), interpolation=cv2.INTER_LINEAR)
    assert _psnr(out, clean) > 38.0  # the texture comes back from the full-size input
    assert _psnr(out, clean) > _psnr(naive, clean) + 10.0


def test_photo_within_budget_is_run_as_it_is():
    _, _, _, hazy = _hazy_scene(60, 80)
    seen = []

    def run(x):
        seen.append(x.shape)
        return 1.0 - x

    out = gu.dehaze_large(hazy, run, max_pixels=60 * 80)
    assert seen == [(60, 80, 3)]
    np.testing.assert_array_equal(out, 1.0 - hazy)


def test_strips_equal_one_whole_resize(monkeypatch):
    rng = np.random.default_rng(1)
    image = rng.random((203, 157, 3)).astype(np.float32)
    a = rng.random((41, 31, 3)).astype(np.float32) * 2
    b = rng.random((41, 31, 3)).astype(np.float32) - 0.5
    monkeypatch.setattr(gu, "STRIP_ROWS", 16)
    out = gu.apply_coefficients(image, a, b)
    up = lambda c: cv2.resize(c, (157, 203), interpolation=cv2.INTER_LINEAR)  # noqa: E731
    reference = np.clip(up(a) * image + up(b), 0, 1)
    np.testing.assert_allclose(out, reference, atol=2e-3)


def test_affine_fit_recovers_a_global_affine_map():
    rng = np.random.default_rng(2)
    guide = rng.random((50, 60, 3)).astype(np.float32)
    target = 1.7 * guide - 0.3
    a, b = gu.affine_coefficients(guide, target, radius=2, eps=1e-8)
    np.testing.assert_allclose(a, 1.7, atol=1e-3)
    np.testing.assert_allclose(b, -0.3, atol=1e-3)


def test_uint8_input_matches_float_input():
    _, _, _, hazy = _hazy_scene(120, 160)
    as_uint8 = np.round(hazy * 255).astype(np.uint8)
    run = lambda x: np.clip(1.2 * x - 0.1, 0, 1)  # noqa: E731
    out8 = gu.dehaze_large(as_uint8, run, max_pixels=2000)
    outf = gu.dehaze_large(as_uint8.astype(np.float32) / 255, run, max_pixels=2000)
    np.testing.assert_allclose(out8, outf, atol=2e-3)  # the small image is rounded to uint8


@pytest.mark.parametrize("h, w, budget, multiple", [(1200, 1600, 300_000, 4), (3000, 4000, 150_000, 4),
                                                    (100, 7000, 20_000, 4), (460, 620, 300_000, 1)])
def test_working_size_keeps_aspect_and_budget(h, w, budget, multiple):
    wh, ww = gu.working_size(h, w, budget, multiple)
    if h * w <= budget:
        assert (wh, ww) == (h, w)
        return
    assert wh * ww <= budget and wh % multiple == 0 and ww % multiple == 0
    assert abs(ww / wh - w / h) / (w / h) < 0.1 or min(wh, ww) == multiple


def test_model_returning_another_size_is_refused():
    _, _, _, hazy = _hazy_scene(100, 100)
    with pytest.raises(ValueError, match="returned shape"):
        gu.dehaze_large(hazy, lambda x: x[:-4], max_pixels=1000)


class _FakeDehazer:
    """Records the sizes it is run at; inverts a known global haze (J = (I - 0.1) / 0.8)."""

    name = "fake"

    def __init__(self):
        self.max_pixels, self.sizes = 1000, []

    def __call__(self, image, dtype=np.float32, progress=None):
        self.sizes.append(image.shape[:2])
        out = np.clip((to_unit_float(image, copy=True) - 0.1) / 0.8, 0, 1)
        return from_unit_float(out, dtype)


def test_guided_dehazer_runs_the_network_once_on_the_whole_working_image():
    clean, _, _, _ = _hazy_scene(300, 400)
    hazy = np.round((clean * 0.8 + 0.1) * 255).astype(np.uint8)
    inner = _FakeDehazer()
    dehazer = gu.GuidedDehazer(inner, max_pixels=12_000)
    out = dehazer(hazy, dtype=np.uint8)
    assert out.dtype == np.uint8 and out.shape == hazy.shape
    assert len(inner.sizes) == 1 and inner.sizes[0][0] * inner.sizes[0][1] <= 12_000
    assert inner.max_pixels >= 12_000  # one run, not tiles
    assert dehazer.last_plan == ("guided", inner.sizes[0])
    assert _psnr(out / 255.0, clean) > 40.0


class _TiledFakeDehazer(_FakeDehazer):
    """A Keras-like dehazer: ``tile`` side and whether its network has image-wide statistics."""

    def __init__(self, image_wide_statistics):
        super().__init__()
        self.tile, self.image_wide_statistics, self.tiles_seen = 32, image_wide_statistics, []

    def __call__(self, image, dtype=np.float32, progress=None):
        self.tiles_seen.append(self.tile)
        return super().__call__(image, dtype, progress)


@pytest.mark.parametrize("image_wide", [True, False])
def test_only_networks_with_image_wide_statistics_run_as_one_tile(image_wide):
    hazy = np.full((300, 400, 3), 0.5, np.float32)
    inner = _TiledFakeDehazer(image_wide)
    gu.GuidedDehazer(inner, max_pixels=12_000)(hazy)
    (h, w), = inner.sizes
    assert inner.tiles_seen == [max(32, h, w) if image_wide else 32]
    assert inner.tile == 32  # restored after the run


def test_guided_dehazer_passes_small_photos_through():
    hazy = np.full((100, 120, 3), 0.5, np.float32)
    inner = _FakeDehazer()
    out = gu.GuidedDehazer(inner, max_pixels=10_000)(hazy)  # 12,000 px <= AS_IS_FACTOR x 10,000
    assert inner.sizes == [(100, 120)]
    np.testing.assert_allclose(out, (0.5 - 0.1) / 0.8, atol=1e-6)
