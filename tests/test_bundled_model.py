"""The AE-CR-Net shipped in keras_dehaze/weights/: loads offline and really dehazes."""

import os

import numpy as np

from keras_dehaze import pretrained
from keras_dehaze.inference import load_dehazer
from keras_dehaze.metrics import psnr


def _textured_scene(seed=0, size=(96, 128)):
    """A synthetic clear image with dark pixels everywhere (so haze is identifiable)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.0, 1.0, (size[0] // 8, size[1] // 8, 3))
    clear = np.kron(base, np.ones((8, 8, 1)))  # 8x8 blocks of saturated colours
    return clear.astype("float32")


def test_bundled_network_is_documented_and_loads_offline():
    assert pretrained.AECRNET in pretrained.available()
    meta = pretrained.metadata(pretrained.AECRNET)
    for key in ("trained_on", "steps", "wall_time_s", "validation"):
        assert key in meta
    weights = os.path.join(pretrained.WEIGHTS_DIR, meta["weights"])
    assert os.path.getsize(weights) < 10.5e6
    assert pretrained.load_pretrained(pretrained.AECRNET).count_params() == 2_614_145


def test_bundled_network_removes_synthetic_haze():
    clear = _textured_scene()
    depth = np.linspace(0.3, 1.0, clear.shape[1])[None, :, None]
    t = np.exp(-1.2 * depth)
    hazy = (clear * t + 0.85 * (1 - t)).astype("float32")
    restored = load_dehazer("aecrnet")(hazy)
    assert restored.shape == hazy.shape
    assert psnr(restored, clear) > psnr(hazy, clear) + 2.0


def test_bundled_int8_tflite_dehazes_like_the_float_model():
    meta = pretrained.metadata(pretrained.AECRNET)
    path = os.path.join(pretrained.WEIGHTS_DIR, meta["int8_tflite"])
    clear = _textured_scene(seed=1, size=(256, 256))
    t = 0.55
    hazy = (clear * t + 0.85 * (1 - t)).astype("float32")
    out = load_dehazer(path)(hazy)
    assert out.shape == hazy.shape and 0 <= out.min() and out.max() <= 1
    assert psnr(out, load_dehazer("aecrnet")(hazy)) > 30  # int8 close to float
