import numpy as np
import pytest

from keras_dehaze.data import find_pairs, read_image, write_image
from keras_dehaze.data.resynthesis import depth_from_pair, prepare_depth_maps, resynthesized_dataset


def _scene(rng, size=(48, 64)):
    clear = rng.uniform(0.05, 0.95, (*size, 3)).astype("float32")
    depth = np.tile(np.linspace(0.2, 1.0, size[1], dtype="float32"), (size[0], 1))  # far on the right
    return clear, depth


def test_depth_recovered_from_outdoor_name_and_from_fitted_airlight(tmp_path):
    rng = np.random.default_rng(0)
    clear, depth = _scene(rng)
    for name, a, beta in [("0007_0.85_1.2.png", 0.85, 1.2), ("0007_3.png", 0.9, 1.0)]:
        t = np.exp(-beta * depth)[..., None]
        hazy = clear * t + a * (1 - t)
        d = depth_from_pair(hazy, clear, name)
        expected = depth / np.percentile(depth, 99)
        assert np.corrcoef(d.ravel(), expected.ravel())[0, 1] > 0.99
        assert np.abs(d - np.clip(expected, 0, 1)).mean() < 0.07  # guided-filter smoothing at borders


def test_prepare_depth_maps_caches_one_map_per_scene_and_dataset_hazes_anew(tmp_path):
    rng = np.random.default_rng(1)
    for scene in ("1400", "1401"):
        clear, depth = _scene(rng)
        write_image(str(tmp_path / "data" / "clear" / f"{scene}.png"), clear)
        for k, beta in ((1, 0.8), (2, 1.6)):
            t = np.exp(-beta * depth)[..., None]
            write_image(str(tmp_path / "data" / "hazy" / f"{scene}_{k}.png"), clear * t + 0.9 * (1 - t))
    pairs = find_pairs(str(tmp_path / "data"))
    depth_pairs = prepare_depth_maps(pairs, str(tmp_path / "cache"))
    assert [p.scene for p in depth_pairs] == ["1400", "1401"]
    assert read_image(depth_pairs[0].hazy).max() == pytest.approx(1.0, abs=1e-3)
    ds = resynthesized_dataset(depth_pairs, batch_size=2, crop_size=32, seed=3)
    batches = [b for _, b in zip(range(3), ds)]
    for hazy, clear in batches:
        assert hazy.shape == clear.shape == (2, 32, 32, 3)
        hazy, clear = hazy.numpy(), clear.numpy()
        assert 0 <= hazy.min() and hazy.max() <= 1
        # Haze lifts dark pixels toward the airlight: hazy >= clear where clear is dark.
        dark = clear < 0.5
        assert (hazy[dark] >= clear[dark] - 1e-4).mean() > 0.99
    again = [b for _, b in zip(range(3), resynthesized_dataset(depth_pairs, 2, 32, seed=3))]
    np.testing.assert_array_equal(batches[2][0].numpy(), again[2][0].numpy())  # deterministic


def test_haze_depth_offset_and_nonuniform_field():
    from keras_dehaze.backend import tf
    from keras_dehaze.data.resynthesis import haze_depth, smooth_field

    field = smooth_field(2, 64, 48, tf.constant([1, 2], tf.int64)).numpy()
    assert field.shape == (2, 64, 48, 1)
    assert -1.0 <= field.min() and field.max() <= 1.0 and field.std() > 0.1
    # Smooth: neighbouring pixels differ far less than the field's range.
    assert np.abs(np.diff(field, axis=1)).max() < 0.2
    depth = tf.zeros([2, 64, 48, 1])
    uniform = haze_depth(depth, tf.constant([0.5, 1.0]), field, 0.0).numpy()
    np.testing.assert_allclose(uniform[0], 0.5)  # zero depth: the offset alone, everywhere
    np.testing.assert_allclose(uniform[1], 1.0)
    patchy = haze_depth(depth, tf.constant([0.5, 1.0]), field, 0.7).numpy()
    np.testing.assert_allclose(patchy, uniform * np.exp(0.7 * field), rtol=1e-6)


def test_dense_resynthesis_hazes_near_pixels_too(tmp_path):
    from keras_dehaze.data.pairing import Pair

    clear = np.random.default_rng(0).uniform(0, 1, (40, 40, 3)).astype(np.float32)
    write_image(str(tmp_path / "c.png"), clear)
    write_image(str(tmp_path / "d.png"), np.zeros((40, 40), np.float32), bit_depth=16)  # all "near"
    pairs = [Pair(hazy=str(tmp_path / "d.png"), clear=str(tmp_path / "c.png"), scene="c")]
    plain = next(iter(resynthesized_dataset(pairs, 1, 32, beta=(2.0, 2.0))))
    dense = next(iter(resynthesized_dataset(pairs, 1, 32, beta=(2.0, 2.0), depth_offset=(1.0, 1.0),
                                            airlight=(0.9, 0.9), airlight_jitter=0.0)))
    np.testing.assert_allclose(plain[0].numpy(), plain[1].numpy(), atol=1e-6)  # depth 0: t = 1, no haze
    hazy, clean = dense[0].numpy(), dense[1].numpy()
    t = np.exp(-2.0)
    np.testing.assert_allclose(hazy, clean * t + 0.9 * (1 - t), atol=1e-5)  # t = exp(-beta * offset)


def test_haze_depth_scale_flattens_the_depth_range():
    from keras_dehaze.backend import tf
    from keras_dehaze.data.resynthesis import haze_depth

    depth = tf.reshape(tf.linspace(0.0, 1.0, 2 * 8 * 8), [2, 8, 8, 1])
    field = tf.zeros([2, 8, 8, 1])
    out = haze_depth(depth, tf.constant([0.3, 0.3]), field, 0.0, tf.constant([0.0, 0.5])).numpy()
    np.testing.assert_allclose(out[0], 0.3)  # scale 0: uniform haze, the offset alone
    np.testing.assert_allclose(out[1], 0.3 + 0.5 * depth.numpy()[1], rtol=1e-6)


def _depth_pair(tmp_path, clear, depth):
    from keras_dehaze.data.pairing import Pair

    write_image(str(tmp_path / "c.png"), clear)
    write_image(str(tmp_path / "d.png"), depth, bit_depth=16)
    return [Pair(hazy=str(tmp_path / "d.png"), clear=str(tmp_path / "c.png"), scene="c")]


def test_uniform_resynthesis_matches_the_closed_form(tmp_path):
    rng = np.random.default_rng(1)
    clear = rng.uniform(0, 1, (40, 40, 3)).astype(np.float32)
    ramp = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (40, 1))  # far right, near left
    pairs = _depth_pair(tmp_path, clear, ramp)
    hazy, clean = (x.numpy() for x in next(iter(resynthesized_dataset(
        pairs, 1, 32, beta=(1.5, 1.5), depth_offset=(0.8, 0.8), depth_scale=(0.0, 0.0),
        airlight=(0.85, 0.85), airlight_jitter=0.0))))
    t = np.exp(-1.5 * 0.8)  # the depth ramp is gone: one t everywhere
    np.testing.assert_allclose(hazy, clean * t + 0.85 * (1 - t), atol=1e-5)


def test_resynthesis_noise_is_zero_mean_and_bounded(tmp_path):
    clear = np.full((40, 40, 3), 0.5, np.float32)
    pairs = _depth_pair(tmp_path, clear, np.zeros((40, 40), np.float32))  # depth 0: hazy = clear
    quiet = next(iter(resynthesized_dataset(pairs, 4, 32, seed=2)))
    noisy = next(iter(resynthesized_dataset(pairs, 4, 32, seed=2, noise=0.05)))
    np.testing.assert_allclose(quiet[0].numpy(), quiet[1].numpy(), atol=1e-6)
    residual = noisy[0].numpy() - noisy[1].numpy()
    per_image_std = residual.std(axis=(1, 2, 3))
    assert abs(residual.mean()) < 0.005
    assert per_image_std.max() < 0.05 * 1.1 and per_image_std.max() > 0.005
    assert len(set(np.round(per_image_std, 4))) > 1  # std drawn per image


def test_synthetic_clean_photos_become_training_pairs(tmp_path):
    """data.synthetic_clean: clean photos with depth maps are hazed beside the training scenes."""
    from keras_dehaze.backend import tf
    from keras_dehaze.config import ConfigError, load_config
    from keras_dehaze.data.training_data import paired_training_data

    rng = np.random.default_rng(4)
    clear, depth = _scene(rng)
    write_image(str(tmp_path / "pairs" / "clear" / "1400.png"), clear * 0.5)  # dark training scene
    t = np.exp(-depth)[..., None]
    write_image(str(tmp_path / "pairs" / "hazy" / "1400_1.png"), clear * 0.5 * t + 0.9 * (1 - t))
    write_image(str(tmp_path / "photos" / "bright.png"), np.full((48, 64, 3), 0.95, np.float32))
    write_image(str(tmp_path / "photos" / "bright_depth.png"), depth, bit_depth=16)
    overrides = [f"data.train=[{tmp_path / 'pairs'}]", f"data.synthetic_clean=[{tmp_path / 'photos'}]",
                 "data.crop_size=32", "data.batch_size=1", f"run.out_dir={tmp_path / 'run'}"]

    config = load_config(None, overrides + ["data.synthetic_fraction=1.0"])
    data = paired_training_data(config, tf.distribute.get_strategy())
    means = {round(float(np.mean(clear_batch)), 2) for _, (_, clear_batch) in zip(range(12), data.train)}
    assert 0.95 in means  # the clean photo is drawn...
    assert any(m < 0.6 for m in means)  # ...beside the training scene

    with pytest.raises(ConfigError, match="synthetic_fraction is 0"):
        paired_training_data(load_config(None, overrides), tf.distribute.get_strategy())
