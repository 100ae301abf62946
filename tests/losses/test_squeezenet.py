"""Tests of the offline ImageNet SqueezeNet v1.1 feature space ("imagenet_squeezenet").

The loader is checked on a synthetic HDF5 written here in the Keras 1 layout of
DeepCognition/keras-squeezenet (same groups, attributes and dataset names, random values): every
array must land in the layer of the same name. With the real file (from $KERAS_DEHAZE_SQUEEZENET
or the shared weights folder; skipped when absent) the features are checked on a real photo.
"""


import h5py
import numpy as np
import pytest

from tests.conftest import shared_path
from keras_dehaze.backend import tf
from keras_dehaze.losses import ContrastiveRegularization, FeatureWeightsError, build_feature_extractor
from keras_dehaze.losses import feature_extractors as fe
from keras_dehaze.losses import squeezenet as sq

REAL_FILE = shared_path("weights", "squeezenet", sq.SQUEEZENET_NOTOP_FILE, env=sq.SQUEEZENET_ENV)

# Written independently of the module: (fire id, squeeze, expand) of SqueezeNet v1.1.
FIRES = [(2, 16, 64), (3, 16, 64), (4, 32, 128), (5, 32, 128), (6, 48, 192), (7, 48, 192), (8, 64, 256),
         (9, 64, 256)]


def keras1_layout(seed=0):
    """[(layer name, [(weight name, array)])] in the order and naming of the upstream file."""
    rng = np.random.default_rng(seed)
    counter = iter(range(1, 100))
    layers = [("input_1", []),
              ("conv1", [(f"uniform{next(counter)}", rng.normal(size=(3, 3, 3, 64))),
                         ("conv1_b", rng.normal(size=(64,)))]),
              ("relu_conv1", []), ("pool1", [])]
    cin = 64
    for fire, squeeze, expand in FIRES:
        p = f"fire{fire}/"
        layers += [
            (p + "squeeze1x1", [(f"uniform{next(counter)}", rng.normal(size=(1, 1, cin, squeeze))),
                                (p + "squeeze1x1_b", rng.normal(size=(squeeze,)))]),
            (p + "relu_squeeze1x1", []),
            (p + "expand1x1", [(f"uniform{next(counter)}", rng.normal(size=(1, 1, squeeze, expand))),
                               (p + "expand1x1_b", rng.normal(size=(expand,)))]),
            (p + "expand3x3", [(f"uniform{next(counter)}", rng.normal(size=(3, 3, squeeze, expand))),
                               (p + "expand3x3_b", rng.normal(size=(expand,)))]),
            (p + "relu_expand1x1", []), (p + "relu_expand3x3", []), (p + "concat", []),
        ]
        if fire in (3, 5):
            layers.append((f"pool{fire}", []))
        cin = 2 * expand
    layers.append(("drop9", []))
    return [(name, [(w, a.astype(np.float32)) for w, a in weights]) for name, weights in layers]


def write_keras1_h5(path, layers):
    """Keras 1 ``save_weights`` layout: root attr layer_names, per layer attr weight_names."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
        for name, weights in layers:
            group = f.create_group(name)
            group.attrs["weight_names"] = np.array([w.encode() for w, _ in weights]) if weights else np.array([])
            for wname, array in weights:
                group.create_dataset(wname, data=array)  # "fire2/expand1x1_b" nests, as upstream
    return str(path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    layers = keras1_layout()
    path = write_keras1_h5(tmp_path_factory.mktemp("sq") / sq.SQUEEZENET_NOTOP_FILE, layers)
    return path, layers


def test_every_array_lands_in_its_named_layer(synthetic):
    path, layers = synthetic
    net = sq.squeezenet_backbone()
    assert net.count_params() == 722_496  # the size of the published no-top file
    sq.assign_squeezenet_weights(net, sq.read_keras_h5_weights(path), path)
    checked = 0
    for name, weights in layers:
        if not weights:
            continue
        kernel, bias = net.get_layer(name).get_weights()
        np.testing.assert_array_equal(kernel, weights[0][1])  # element-wise, not just shapes
        np.testing.assert_array_equal(bias, weights[1][1])
        checked += 2
    assert checked == 2 * (1 + 3 * len(FIRES))  # all 50 arrays of the file
    assert sum(a.size for _, w in layers for _, a in w) == 722_496


def test_extractor_from_synthetic_file_is_frozen_and_shaped(synthetic, tmp_path):
    path, layers = synthetic
    g = build_feature_extractor("imagenet_squeezenet", path)
    assert g is build_feature_extractor("imagenet_squeezenet", path)  # cached
    assert not g.trainable and not g.trainable_weights
    feats = g(tf.zeros([2, 64, 96, 3]))
    assert [tuple(f.shape) for f in feats] == [(2, 31, 47, 64), (2, 15, 23, 128), (2, 7, 11, 256),
                                               (2, 3, 5, 384), (2, 3, 5, 512)]
    # The tap is the layer of the file: conv1 kernel applied to the caffe input, then ReLU.
    x = np.random.default_rng(1).random((1, 33, 33, 3)).astype(np.float32)
    bgr = x[..., ::-1] * 255.0 - np.array(fe.IMAGENET_CAFFE_MEAN_BGR, np.float32)
    kernel, bias = layers[1][1][0][1], layers[1][1][1][1]
    want = np.maximum(tf.nn.conv2d(bgr, kernel, 2, "VALID").numpy() + bias, 0.0)
    np.testing.assert_allclose(g(x)[0].numpy(), want, rtol=1e-4, atol=1e-3)
    fe.clear_feature_extractor_cache("imagenet_squeezenet")


def test_missing_file_names_the_file_the_env_var_and_the_config_key(tmp_path, monkeypatch):
    missing = str(tmp_path / "nowhere.h5")
    with pytest.raises(FeatureWeightsError, match="nowhere.h5.*KERAS_DEHAZE_SQUEEZENET"):
        build_feature_extractor("imagenet_squeezenet", missing)
    monkeypatch.setenv(sq.SQUEEZENET_ENV, missing)
    with pytest.raises(FeatureWeightsError, match="KERAS_DEHAZE_SQUEEZENET=.*nowhere.h5"):
        build_feature_extractor("imagenet_squeezenet")
    monkeypatch.delenv(sq.SQUEEZENET_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))  # empty Keras cache
    monkeypatch.setattr(sq, "_default_candidates", lambda: [str(tmp_path / ".keras" / "models" / "x.h5")])
    with pytest.raises(FeatureWeightsError, match=r"missing.*trainer\.feature_weights"):
        ContrastiveRegularization("imagenet_squeezenet")


def test_env_var_is_used(synthetic, monkeypatch):
    monkeypatch.setenv(sq.SQUEEZENET_ENV, synthetic[0])
    assert sq.resolve_squeezenet_weights() == synthetic[0]
    assert sq.resolve_squeezenet_weights("imagenet") == synthetic[0]


def test_file_of_another_network_is_refused(tmp_path):
    # A VGG-style Keras weights file: right layout, other layer names.
    vgg = [("block1_conv1", [("block1_conv1_W", np.zeros((3, 3, 3, 64), np.float32)),
                             ("block1_conv1_b", np.zeros(64, np.float32))])]
    path = write_keras1_h5(tmp_path / "vgg.h5", vgg)
    with pytest.raises(FeatureWeightsError, match=r"missing in the file: conv1.*lacks: block1_conv1"):
        sq.squeezenet_imagenet(path)
    # SqueezeNet v1.0 (conv1 7x7x96) and the include-top file (conv10).
    layers = keras1_layout()
    layers[1] = ("conv1", [("uniform1", np.zeros((7, 7, 3, 96), np.float32)), ("conv1_b", np.zeros(96, np.float32))])
    with pytest.raises(FeatureWeightsError, match=r"shape mismatches: conv1"):
        sq.squeezenet_imagenet(write_keras1_h5(tmp_path / "v10.h5", layers))
    layers = keras1_layout() + [("conv10", [("uniform26", np.zeros((1, 1, 512, 1000), np.float32)),
                                            ("conv10_b", np.zeros(1000, np.float32))])]
    with pytest.raises(FeatureWeightsError, match=r"conv10 \(the include-top file"):
        sq.squeezenet_imagenet(write_keras1_h5(tmp_path / "top.h5", layers))
    # Not HDF5 at all, and HDF5 without the Keras layout.
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(FeatureWeightsError, match="not a readable HDF5"):
        sq.squeezenet_imagenet(str(tmp_path / "junk.h5"))
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(FeatureWeightsError, match="not a Keras weights file"):
        sq.squeezenet_imagenet(str(tmp_path / "plain.h5"))


@pytest.mark.skipif(REAL_FILE is None, reason="SqueezeNet weights not available (set KERAS_DEHAZE_SQUEEZENET)")
def test_real_weights_give_finite_features_that_see_haze():
    from keras_dehaze.data.image_io import read_image

    stored = sq.read_keras_h5_weights(REAL_FILE)
    assert sum(a.size for w in stored.values() for a in w.values()) == 722_496
    g = build_feature_extractor("imagenet_squeezenet", REAL_FILE)
    photo = shared_path("data", "clean-photos", "100075.jpg")
    if photo is not None:
        clear = tf.constant(read_image(photo)[None, :240, :240])
    else:
        clear = tf.image.resize(tf.constant(np.random.default_rng(0).random((1, 30, 30, 3)), tf.float32), [240, 240])
    hazy = clear * 0.4 + 0.6 * 0.9  # t = 0.4, A = 0.9
    f_clear, f_hazy = g(clear), g(hazy)
    assert [tuple(f.shape) for f in f_clear] == [(1, 119, 119, 64), (1, 59, 59, 128), (1, 29, 29, 256),
                                                 (1, 14, 14, 384), (1, 14, 14, 512)]
    for a, b in zip(f_clear, f_hazy):
        a, b = a.numpy(), b.numpy()
        assert np.isfinite(a).all() and np.isfinite(b).all() and a.max() > 0
        assert np.mean(np.abs(a - b)) > 0.2 * np.mean(np.abs(a))  # haze changes every tap
    cr = ContrastiveRegularization("imagenet_squeezenet", weights=REAL_FILE)
    assert "SqueezeNet" in cr.describe() and "fire2/4/6/8" in cr.describe()
    at = [float(cr(clear * (1 - w) + hazy * w, clear, hazy)[0]) for w in (0.0, 0.25, 0.5, 0.75)]
    assert at[0] == 0.0 and at[0] < at[1] < at[2] < at[3]  # CR grows as the anchor is hazier
