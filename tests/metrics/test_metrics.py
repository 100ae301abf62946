"""Checks keras_dehaze.metrics against independent implementations.

References: scikit-image (PSNR, SSIM, rgb2lab, deltaE_ciede2000) and the published CIEDE2000
test pairs of Sharma, Wu and Dalal (2005). Images are synthesized here (no data set needed):
a textured clean scene J and a hazy version I = J t + A (1 - t) with a depth-dependent t.
"""

import cv2
import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from keras_dehaze.metrics import (
    CONVENTION,
    ciede2000,
    ciede2000_lab,
    psnr,
    rgb_to_lab,
    ssim,
)

H, W = 72, 96  # non-square on purpose, to catch swapped axes


def _sk_ssim(a, b, data_range=1.0):
    channel_axis = -1 if a.ndim == 3 else None
    return sk_ssim(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
        channel_axis=channel_axis,
    )


def _bt601_y(rgb):
    """BT.601 Y written out independently of the package (BasicSR's formula)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return 16.0 / 255.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


@pytest.fixture(scope="module")
def scene():
    """Returns (clean, hazy, restored) float64 RGB images in [0, 1]."""
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    yy, xx = yy / (H - 1), xx / (W - 1)
    # Smooth gradients + a sinusoidal texture + a hard-edged block + sensor noise.
    clean = np.stack(
        [
            0.15 + 0.6 * xx + 0.1 * np.sin(0.9 * xx * W),
            0.25 + 0.5 * yy + 0.1 * np.cos(0.7 * yy * H),
            0.4 + 0.3 * np.sin(8 * xx + 5 * yy),
        ],
        axis=-1,
    )
    clean[20:40, 30:60] *= 0.5
    clean = np.clip(clean + 0.03 * rng.standard_normal(clean.shape), 0.0, 1.0)
    # Haze model with depth growing to the top of the frame, airlight slightly blue.
    depth = 0.5 + 2.0 * (1.0 - yy)
    t = np.exp(-0.8 * depth)[..., None]
    airlight = np.array([0.85, 0.88, 0.92])
    hazy = clean * t + airlight * (1.0 - t)
    hazy = cv2.GaussianBlur(hazy, (5, 5), 1.0)
    # A good "dehazed" result: close to the clean image, a bit blurred and noisy.
    restored = cv2.GaussianBlur(clean, (3, 3), 0.6) + 0.01 * rng.standard_normal(clean.shape)
    restored = np.clip(restored, 0.0, 1.0)
    return clean, hazy, restored


@pytest.fixture(scope="module", params=["hazy", "restored"])
def pair(request, scene):
    clean, hazy, restored = scene
    return (hazy if request.param == "hazy" else restored), clean


# ----------------------------------------------------------------------------- vs scikit-image


def test_psnr_matches_skimage(pair):
    pred, target = pair
    assert psnr(pred, target) == pytest.approx(sk_psnr(target, pred, data_range=1.0), rel=1e-12)


def test_ssim_matches_skimage(pair):
    pred, target = pair
    assert ssim(pred, target) == pytest.approx(_sk_ssim(target, pred), abs=1e-10)


def test_ciede2000_matches_skimage(pair):
    pred, target = pair
    expected = deltaE_ciede2000(rgb2lab(target), rgb2lab(pred)).mean()
    # skimage's sRGB->XYZ matrix has 6 digits, ours 7: tiny relative difference only.
    assert ciede2000(pred, target) == pytest.approx(expected, rel=1e-3)


def test_metrics_rank_hazy_below_restored(scene):
    clean, hazy, restored = scene
    assert psnr(restored, clean) > psnr(hazy, clean)
    assert ssim(restored, clean) > ssim(hazy, clean)
    assert ciede2000(restored, clean) < ciede2000(hazy, clean)


def test_rgb_to_lab_matches_skimage(scene):
    _, hazy, _ = scene
    np.testing.assert_allclose(rgb_to_lab(hazy), rgb2lab(hazy), atol=1e-2)
    np.testing.assert_allclose(rgb_to_lab(np.ones(3)), [100.0, 0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(rgb_to_lab(np.zeros(3)), [0.0, 0.0, 0.0], atol=1e-12)


def test_ciede2000_lab_matches_skimage_on_random_pairs():
    rng = np.random.default_rng(7)
    lab1 = rng.uniform([0, -100, -100], [100, 100, 100], size=(5000, 3))
    lab2 = lab1 + rng.normal(0.0, 8.0, size=lab1.shape)
    lab2[:50, 1:] = 0.0  # zero-chroma special case
    np.testing.assert_allclose(ciede2000_lab(lab1, lab2), deltaE_ciede2000(lab1, lab2), atol=1e-9)


# Sharma, Wu, Dalal (2005), Table 1: (L1, a1, b1), (L2, a2, b2), dE00 (4 decimals). Rows cover
# the hue-wrap and mean-hue branches (pairs around a* = +-2.49) and ordinary colours.
SHARMA_PAIRS = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 2.8361, -74.0200), (50.0, 0.0, -82.7485), 3.4412),
    ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0000),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.4900, -0.0010), (50.0, -2.4900, 0.0009), 7.1792),
    ((50.0, 2.4900, -0.0010), (50.0, -2.4900, 0.0011), 7.2195),
    ((50.0, -0.0010, 2.4900), (50.0, 0.0009, -2.4900), 4.8045),
    ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (61.0, -5.0, 29.0), 22.8977),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_lab_sharma_table():
    lab1 = np.array([p[0] for p in SHARMA_PAIRS])
    lab2 = np.array([p[1] for p in SHARMA_PAIRS])
    expected = np.array([p[2] for p in SHARMA_PAIRS])
    # The formula is symmetric; the published values are rounded to 4 decimals.
    np.testing.assert_allclose(ciede2000_lab(lab1, lab2), expected, atol=5e-5)
    np.testing.assert_allclose(ciede2000_lab(lab2, lab1), expected, atol=5e-5)


# ----------------------------------------------------------------------------- edge cases


def test_identical_images(scene):
    clean = scene[0]
    assert psnr(clean, clean.copy()) == float("inf")
    assert psnr(clean, clean, y_channel=True) == float("inf")
    assert ssim(clean, clean) == pytest.approx(1.0, abs=1e-12)
    assert ciede2000(clean, clean) == 0.0


@pytest.mark.parametrize("metric", [psnr, ssim, ciede2000])
def test_shape_mismatch_names_both_shapes(scene, metric):
    clean = scene[0]
    with pytest.raises(ValueError, match=r"\(72, 96, 3\).*\(72, 95, 3\)"):
        metric(clean, clean[:, :95])


def test_ssim_too_small_image():
    small = np.full((10, 40, 3), 0.5)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(small, small)
    # Large enough before cropping, too small after.
    medium = np.full((16, 40, 3), 0.5)
    assert ssim(medium, medium) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(medium, medium, crop_border=3)


def test_crop_border_matches_manual_crop(pair):
    pred, target = pair
    b = 6
    p, t = pred[b:-b, b:-b], target[b:-b, b:-b]
    expected_psnr = sk_psnr(t, p, data_range=1.0)
    assert psnr(pred, target, crop_border=b) == pytest.approx(expected_psnr, rel=1e-12)
    assert ssim(pred, target, crop_border=b) == pytest.approx(_sk_ssim(t, p), abs=1e-10)
    expected_de = deltaE_ciede2000(rgb2lab(t), rgb2lab(p)).mean()
    assert ciede2000(pred, target, crop_border=b) == pytest.approx(expected_de, rel=1e-3)
    # Haze is non-uniform, so cropping must actually change the numbers.
    assert psnr(pred, target, crop_border=b) != psnr(pred, target)
    assert ssim(pred, target, crop_border=b) != ssim(pred, target)


def test_y_channel_matches_manual_conversion(pair):
    pred, target = pair
    yp, yt = _bt601_y(pred), _bt601_y(target)
    assert psnr(pred, target, y_channel=True) == pytest.approx(
        sk_psnr(yt, yp, data_range=1.0), rel=1e-12
    )
    assert ssim(pred, target, y_channel=True) == pytest.approx(_sk_ssim(yt, yp), abs=1e-10)
    assert psnr(pred, target, y_channel=True) != pytest.approx(psnr(pred, target), abs=1e-3)
    # Both options together: crop first, then Y (order does not matter, but check the combination).
    b = 4
    assert psnr(pred, target, crop_border=b, y_channel=True) == pytest.approx(
        sk_psnr(yt[b:-b, b:-b], yp[b:-b, b:-b], data_range=1.0), rel=1e-12
    )


def test_uint8_inputs(pair):
    pred, target = pair
    p8 = np.round(pred * 255).astype(np.uint8)
    t8 = np.round(target * 255).astype(np.uint8)
    # skimage on the raw uint8 arrays (data range 255) is the reference.
    assert psnr(p8, t8) == pytest.approx(sk_psnr(t8, p8, data_range=255), rel=1e-12)
    assert ssim(p8, t8) == pytest.approx(_sk_ssim(t8, p8, data_range=255), abs=1e-10)
    # data_range=255 means the same thing for uint8; anything else is ambiguous.
    assert psnr(p8, t8, data_range=255) == psnr(p8, t8)
    with pytest.raises(ValueError, match="data_range"):
        psnr(p8, t8, data_range=2.0)
    # Mixed uint8 / float [0, 1] inputs are both put on the [0, 1] scale.
    assert psnr(p8, t8.astype(np.float64) / 255.0) == pytest.approx(psnr(p8, t8), rel=1e-12)
    expected_de = deltaE_ciede2000(rgb2lab(t8), rgb2lab(p8)).mean()
    assert ciede2000(p8, t8) == pytest.approx(expected_de, rel=1e-3)


def test_uint16_and_bad_dtypes(pair):
    pred, target = pair
    p16 = np.round(pred * 65535).astype(np.uint16)
    t16 = np.round(target * 65535).astype(np.uint16)
    assert psnr(p16, t16) == pytest.approx(sk_psnr(t16, p16, data_range=65535), rel=1e-12)
    with pytest.raises(TypeError, match="int32"):
        psnr(p16.astype(np.int32), t16.astype(np.int32))


def test_convention_string_is_explicit():
    fragments = ("[0,1]", "no border crop", "window 11", "sigma 1.5", "K1=0.01", "K2=0.03")
    for fragment in fragments + ("CIEDE2000", "D65"):
        assert fragment in CONVENTION


# ----------------------------------------------------------------------------- TensorFlow versions


@pytest.fixture(scope="module")
def batch(scene):
    clean, hazy, restored = scene
    pred = np.stack([hazy, restored, clean]).astype(np.float32)
    target = np.stack([clean, clean, clean]).astype(np.float32)
    return pred, target


def test_tf_metrics_shape_and_agreement(batch):
    from keras_dehaze.metrics import psnr_tf, ssim_tf

    pred, target = batch
    p_tf = psnr_tf(pred, target).numpy()
    s_tf = ssim_tf(pred, target).numpy()
    assert p_tf.shape == (3,) and s_tf.shape == (3,)
    for i in range(2):
        assert p_tf[i] == pytest.approx(psnr(pred[i], target[i]), abs=1e-3)
        assert s_tf[i] == pytest.approx(ssim(pred[i], target[i]), abs=1e-4)
    # Third example is identical: documented inf, and SSIM 1.
    assert np.isposinf(p_tf[2])
    assert s_tf[2] == pytest.approx(1.0, abs=1e-5)


def test_tf_metrics_inside_tf_function(batch):
    from keras_dehaze.backend import tf
    from keras_dehaze.metrics import psnr_tf, ssim_tf

    pred, target = batch

    @tf.function
    def step(p, t):
        return tf.reduce_mean(psnr_tf(p[:2], t[:2])), tf.reduce_mean(ssim_tf(p, t))

    mean_psnr, mean_ssim = step(tf.constant(pred), tf.constant(target))
    expected_psnr = np.mean([psnr(pred[i], target[i]) for i in range(2)])
    expected_ssim = np.mean([ssim(pred[i], target[i]) for i in range(3)])
    assert float(mean_psnr) == pytest.approx(expected_psnr, abs=1e-3)
    assert float(mean_ssim) == pytest.approx(expected_ssim, abs=1e-3)
