"""Haze synthesis on clean photos without depth sensors: PyDNet++ depth (LiteRT), the prepared
clean-depth folders, the ASM closed form through the training pipeline, depth evaluation, and
PyDNet++ run by LiteRT in the Rehazy trainer (d0 only, with rehazy.depth_loss: never; the
differentiable replay that gives the depth term is tested in test_tflite_graph.py).

The real PyDNet++ file comes from $KERAS_DEHAZE_PYDNET or the shared weights folder; the tests
that need it (or the shared RGB-D frames) skip when absent.
"""

import os

import numpy as np
import pytest

from tests.conftest import shared_path
from keras_dehaze.backend import keras, tf
from keras_dehaze.config import load_config
from keras_dehaze.data import read_image, write_image
from keras_dehaze.data.unpaired import find_clean_depth, unpaired_dataset
from keras_dehaze.depth import PyDNetDepth, PyDNetError, PyDNetTFLite, build_depth_estimator, evaluate
from keras_dehaze.depth import pydnet as pd
from keras_dehaze.models import AECRNet
from keras_dehaze.trainers import RehazyTrainer
from keras_dehaze.trainers import rehazy as rehazy_module
from tests.training_scripts import load_training_script

PYDNET = shared_path("weights", "depth", pd.PYDNET_FILE, env=pd.PYDNET_ENV)
RGBD = shared_path("data", "depth", "rgbd")
needs_pydnet = pytest.mark.skipif(PYDNET is None, reason="PyDNet++ file not available (set KERAS_DEHAZE_PYDNET)")


class RampDepth:
    """Stands in for PyDNetTFLite in the prepare script: a known depth map (left 0 -> right 1)."""

    def __init__(self, path=None, output="depth"):
        pass

    def depth(self, image):
        h, w = image.shape[:2]
        return np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32)[None], (h, 1))

    def describe(self):
        return "ramp"


def test_asm_closed_form_through_prepared_folder_pipeline_and_trainer(tmp_path, monkeypatch):
    """photo -> prepare_clean_depth --pydnet (depth known) -> find_clean_depth -> unpaired_dataset ->
    the Rehazy clean branch: the synthetic hazy image is J t + A (1 - t), t = exp(-beta d)."""
    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    photo = rng.uniform(0.0, 1.0, (24, 40, 3)).astype(np.float32)
    write_image(str(src / "p0.png"), photo)
    photo = read_image(str(src / "p0.png"))  # as stored (8-bit)
    prepare = load_training_script("prepare_clean_depth")
    monkeypatch.setattr(pd, "PyDNetTFLite", RampDepth)
    out = tmp_path / "clean"
    assert prepare.main(["--src", str(src), "--out", str(out), "--pydnet"]) == 0
    pairs = find_clean_depth(str(out))
    assert [os.path.basename(p.clear) for p in pairs] == ["p0.png"]

    (clean, depth), = unpaired_dataset(pairs, [], 1, crop_size=None, augment=False).take(1)
    want_d = RampDepth().depth(photo)
    np.testing.assert_allclose(depth[0, ..., 0], want_d, atol=1.0 / 65535 + 1e-7)  # 16-bit PNG
    np.testing.assert_allclose(clean[0], photo, atol=1e-6)

    airlight, beta = np.array([0.8], np.float32), np.array([1.7], np.float32)
    t = np.exp(-beta[0] * want_d)[..., None]
    want_hazy = photo * t + airlight[0] * (1.0 - t)
    # The clean branch of the trainer with fixed A, beta and an identity "dehazer": its loss is
    # exactly mean |I - J| of the synthetic image it built.
    monkeypatch.setattr(rehazy_module, "sample_haze_params", lambda n, a, b: (tf.constant(airlight), tf.constant(beta)))
    inputs = keras.Input((None, None, 3))
    identity = keras.Model(inputs, keras.layers.Lambda(lambda x: x)(inputs))
    trainer = RehazyTrainer(identity)
    loss = float(trainer.clean_losses(clean, depth)[0])
    np.testing.assert_allclose(loss, np.mean(np.abs(want_hazy - photo)), rtol=1e-4)
    # the nearest column is untouched (t = 1), the farthest is exp(-beta) of the way
    assert np.abs(want_hazy[:, 0] - photo[:, 0]).max() < 1e-6


def test_missing_or_foreign_pydnet_file_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(pd.PYDNET_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(PyDNetError, match="KERAS_DEHAZE_PYDNET"):
        PyDNetTFLite()
    with pytest.raises(PyDNetError, match="not found.*nowhere.tflite"):
        PyDNetTFLite(str(tmp_path / "nowhere.tflite"))
    monkeypatch.setenv(pd.PYDNET_ENV, str(tmp_path / "gone.tflite"))
    with pytest.raises(PyDNetError, match="KERAS_DEHAZE_PYDNET=.*gone.tflite"):
        build_depth_estimator("pydnet")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    with pytest.raises(PyDNetError, match="could not load"):
        PyDNetTFLite(str(junk))
    # A real TFLite model of another network: refused, naming what it has.
    inputs = keras.Input((32, 32, 3), batch_size=1)
    other = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs))
    path = tmp_path / "other.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(other).convert())
    with pytest.raises(PyDNetError, match=r"not the PyDNet\+\+ TFLite model.*448, 640"):
        PyDNetTFLite(str(path))
    assert not pd.is_pydnet_file(str(path)) and not pd.is_pydnet_file(str(junk))


def test_spearman_and_evaluation_table():
    x = np.arange(100.0)
    assert evaluate.spearman(x, x ** 3) == pytest.approx(1.0)
    assert evaluate.spearman(x, -x) == pytest.approx(-1.0)
    assert evaluate.spearman([1, 1, 2, 2], [1, 1, 2, 2]) == pytest.approx(1.0)  # ties
    prior = evaluate.rows_prior(np.zeros((5, 3, 3)))
    assert prior[0, 0] == 1.0 and prior[-1, 0] == 0.0


@needs_pydnet
def test_real_pydnet_depth_shapes_range_and_estimator_interface(monkeypatch):
    net = PyDNetTFLite(PYDNET)
    image = np.random.default_rng(0).uniform(0, 1, (60, 90, 3)).astype(np.float32)
    d = net.depth(image)
    assert d.shape == (60, 90) and d.dtype == np.float32 and np.isfinite(d).all()
    assert d.min() >= 0.0 and d.max() <= 1.0 and d.max() - d.min() > 0.5
    np.testing.assert_allclose(PyDNetTFLite(PYDNET, output="disparity").depth(image), 1.0 - d, atol=1e-6)
    assert pd.is_pydnet_file(PYDNET)
    monkeypatch.setenv(pd.PYDNET_ENV, PYDNET)
    for spec in (PYDNET, "pydnet"):
        estimator = build_depth_estimator(spec)
        assert isinstance(estimator, PyDNetDepth) and not estimator.differentiable and estimator.haze_invariant
    batch = tf.constant(np.stack([image, image[::-1]]))
    x = tf.Variable(batch)
    with tf.GradientTape() as tape:
        out = tf.function(estimator.__call__)(x)
    assert out.shape == (2, 60, 90, 1)
    np.testing.assert_allclose(out[0, ..., 0], d, atol=1e-6)
    assert tape.gradient(out, x) is None or float(tf.reduce_sum(tf.abs(tape.gradient(out, x)))) == 0.0


@needs_pydnet
def test_rehazy_without_depth_term_runs_pydnet_by_litert_for_d0():
    overrides = ["trainer.name=rehazy", "rehazy.hazy=[real]", "rehazy.semantic=none", f"rehazy.depth={PYDNET}",
                 "rehazy.depth_loss=never"]
    trainer = RehazyTrainer.from_experiment_config(load_config(overrides=overrides), AECRNet(filters=4))
    assert trainer.depth_estimator is None
    assert isinstance(trainer.rehazy_depth, PyDNetDepth)  # no gradient needed: LiteRT
    assert "depth term OFF: rehazy.depth_loss is 'never'" in trainer.describe()
    hazy = tf.random.uniform([1, 32, 48, 3], 0.3, 0.9, seed=1)
    rehazed, a0, d0, dbeta = tf.function(trainer.make_rehazy)(hazy)
    assert d0.shape == (1, 32, 48, 1) and rehazed.shape == hazy.shape
    np.testing.assert_allclose(d0[0, ..., 0], trainer.rehazy_depth.runner.depth(hazy[0].numpy()), atol=1e-6)


@needs_pydnet
@pytest.mark.skipif(RGBD is None, reason="shared RGB-D frames not available")
def test_pydnet_orders_depth_like_the_sensor_on_rgbd_frames():
    """The measured orientation: on the indoor RGB-D frames the raw output grows with distance
    (Spearman +0.50..+0.63 on color/0000k; documented in keras_dehaze.depth.pydnet)."""
    net = PyDNetTFLite(PYDNET)
    rows = evaluate.evaluate_depth(RGBD, {"pydnet": net.depth}, max_pixels=20_000)
    rhos = [r["pydnet"] for r in rows if "color" in r["frame"]]
    assert len(rhos) >= 1 and min(rhos) > 0.3
