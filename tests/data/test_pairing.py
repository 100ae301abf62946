"""Dataset pairing (every layout and error) and the tf.data pipelines, on tiny generated folders."""

import os

import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.data import (
    DatasetError,
    Pair,
    find_pairs,
    image_dataset,
    list_images,
    paired_dataset,
    read_image,
    split_by_scene,
    validation_dataset,
    write_image,
)


def _touch_image(path, h=6, w=8, value=0.5):
    write_image(path, np.full((h, w, 3), value, np.float32))


def _names(pairs):
    return [(os.path.basename(p.hazy), os.path.basename(p.clear), p.scene) for p in pairs]


# ----------------------------------------------------------------------------- pairing


def test_reside_indoor_names(tmp_path):
    for name in ("1400_1", "1400_10", "1400_2", "1401_1"):
        _touch_image(tmp_path / "hazy" / f"{name}.png")
    for name in ("1400", "1401", "1402"):  # a clear image without hazy ones is fine
        _touch_image(tmp_path / "clear" / f"{name}.png")
    (tmp_path / "hazy" / "Thumbs.db").write_text("junk")  # non-images are ignored
    (tmp_path / "hazy" / ".DS_Store").write_text("junk")
    assert _names(find_pairs(tmp_path)) == [
        ("1400_1.png", "1400.png", "1400"), ("1400_2.png", "1400.png", "1400"),
        ("1400_10.png", "1400.png", "1400"), ("1401_1.png", "1401.png", "1401")]
    assert find_pairs(tmp_path, layout="reside") == find_pairs(tmp_path)


def test_reside_outdoor_jpg_hazy_png_clear_gt_folder(tmp_path):
    _touch_image(tmp_path / "hazy" / "0001_0.8_0.2.jpg")
    _touch_image(tmp_path / "hazy" / "0002_0.8_0.08.jpg")
    _touch_image(tmp_path / "GT" / "0001.png")
    _touch_image(tmp_path / "GT" / "0002.png")
    pairs = find_pairs(str(tmp_path))
    assert _names(pairs) == [("0001_0.8_0.2.jpg", "0001.png", "0001"),
                             ("0002_0.8_0.08.jpg", "0002.png", "0002")]
    assert all(isinstance(p, Pair) and os.path.isabs(p.hazy) for p in pairs)
    with pytest.raises(Exception):
        pairs[0].scene = "x"  # frozen


def test_same_name_layout_and_split_folder(tmp_path):
    for split in ("train", "test"):
        for name in ("a_1", "b_2"):  # underscores must not trigger the RESIDE rule
            _touch_image(tmp_path / split / "GT" / f"{name}.png")
            _touch_image(tmp_path / split / "hazy" / f"{name}.png")
    assert _names(find_pairs(tmp_path / "train")) == [("a_1.png", "a_1.png", "a_1"),
                                                      ("b_2.png", "b_2.png", "b_2")]
    assert find_pairs(tmp_path / "test", layout="same_name")[0].hazy.endswith(
        os.path.join("test", "hazy", "a_1.png"))
    with pytest.raises(DatasetError, match="split dataset"):
        find_pairs(tmp_path)


def test_ntire_single_folder(tmp_path):
    for name in ("01_hazy", "01_GT", "02_Hazy", "02_gt", "readme_notes"):
        _touch_image(tmp_path / f"{name}.png")
    assert _names(find_pairs(tmp_path)) == [("01_hazy.png", "01_GT.png", "01_GT"),
                                            ("02_Hazy.png", "02_gt.png", "02_gt")]


def test_missing_gt_is_an_error_listing_files(tmp_path):
    _touch_image(tmp_path / "clear" / "1.png")
    _touch_image(tmp_path / "hazy" / "1_1.png")
    for i in range(2, 15):
        _touch_image(tmp_path / "hazy" / f"{i}_1.png")
    with pytest.raises(DatasetError) as info:
        find_pairs(tmp_path)
    message = str(info.value)
    assert "13 hazy file(s)" in message and "2_1.png" in message and "and 3 more" in message
    assert "allow_missing_gt" in message
    with pytest.warns(UserWarning, match="13 hazy"):
        assert len(find_pairs(tmp_path, allow_missing_gt=True)) == 1


def test_ntire_missing_gt(tmp_path):
    _touch_image(tmp_path / "01_hazy.png")
    _touch_image(tmp_path / "01_GT.png")
    _touch_image(tmp_path / "02_hazy.png")
    with pytest.raises(DatasetError, match="02_hazy.png"):
        find_pairs(tmp_path)


def test_empty_and_missing_and_unknown(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        find_pairs(tmp_path / "nope")
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        find_pairs(tmp_path)  # empty root
    (tmp_path / "hazy").mkdir()
    (tmp_path / "clear").mkdir()
    with pytest.raises(DatasetError, match=r"hazy contains no images.*clear/ \(or GT/\)"):
        find_pairs(tmp_path)
    _touch_image(tmp_path / "hazy" / "x.png")
    _touch_image(tmp_path / "clear" / "y.png")
    with pytest.raises(DatasetError, match="no hazy file matches"):
        find_pairs(tmp_path)
    with pytest.raises(DatasetError, match="NN_hazy"):
        find_pairs(tmp_path, layout="ntire")
    with pytest.raises(ValueError, match="layout must be"):
        find_pairs(tmp_path, layout="bogus")


def test_ambiguous_gt(tmp_path):
    _touch_image(tmp_path / "hazy" / "1_1.png")
    _touch_image(tmp_path / "clear" / "1.png")
    _touch_image(tmp_path / "clear" / "1.jpg")
    with pytest.raises(DatasetError, match="ambiguous"):
        find_pairs(tmp_path)


def _scene_pairs():
    return [Pair(f"h/{s}_{k}.png", f"c/{s}.png", str(s)) for s in range(10) for k in range(3)]


def test_split_by_scene_holds_out_whole_scenes():
    pairs = _scene_pairs()
    train, val = split_by_scene(pairs, val_scenes=["3", "7"])
    assert {p.scene for p in val} == {"3", "7"} and len(val) == 6 and len(train) == 24
    train, val = split_by_scene(pairs, val_fraction=0.3, seed=5)
    assert len({p.scene for p in val}) == 3 and len(val) == 9
    assert not {p.scene for p in train} & {p.scene for p in val}
    assert split_by_scene(pairs, val_fraction=0.3, seed=5) == (train, val)
    assert split_by_scene(pairs, val_fraction=0.3, seed=6)[1] != val
    with pytest.raises(DatasetError, match="unknown scene"):
        split_by_scene(pairs, val_scenes=["42"])
    with pytest.raises(ValueError, match="exactly one"):
        split_by_scene(pairs)
    with pytest.raises(DatasetError, match="nothing left"):
        split_by_scene(pairs, val_scenes=[str(s) for s in range(10)])


def test_list_images(tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        list_images(tmp_path)
    for name in ("b10.jpg", "b2.png"):
        _touch_image(tmp_path / "real" / name)
    (tmp_path / "real" / "notes.txt").write_text("x")
    assert [os.path.basename(p) for p in list_images(tmp_path / "real")] == ["b2.png", "b10.jpg"]
    _touch_image(tmp_path / "rtts" / "JPEGImages" / "a.jpg")
    assert list_images(tmp_path / "rtts")[0].endswith(os.path.join("JPEGImages", "a.jpg"))
    assert len(list_images(tmp_path, recursive=True)) == 3
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "nope")


# ----------------------------------------------------------------------------- pipelines

H, W = 20, 24


@pytest.fixture
def pairs(tmp_path):
    """Random-noise clear images (any wrong flip/rotation shows) and hazy = 0.5 * clear + 0.25,
    as 16-bit PNGs so the relation survives quantization."""
    rng = np.random.default_rng(0)
    for i in range(6):
        clear = rng.random((H, W, 3)).astype(np.float32)
        write_image(tmp_path / "clear" / f"{i}.png", clear, bit_depth=16)
        write_image(tmp_path / "hazy" / f"{i}_1.png", 0.5 * clear + 0.25, bit_depth=16)
    found = find_pairs(tmp_path)
    assert len(found) == 6
    return found


def _arrays(ds, n=None):
    ds = ds if n is None else ds.take(n)
    return [tuple(t.numpy() for t in batch) if isinstance(batch, tuple) else batch.numpy()
            for batch in ds]


def _find_window(crop, image):
    """(flip, k) if `crop` equals a window of `image` flipped then turned k*90 degrees, else None."""
    ch, cw = crop.shape[:2]
    for flip in (False, True):
        base = image[:, ::-1] if flip else image
        for k in range(4):
            turned = np.rot90(base, k)
            for y in range(turned.shape[0] - ch + 1):
                for x in range(turned.shape[1] - cw + 1):
                    # Crops, flips and turns copy pixels exactly, so exact equality holds.
                    if np.array_equal(turned[y, x], crop[0, 0]) and \
                            np.array_equal(turned[y:y + ch, x:x + cw], crop):
                        return flip, k
    return None


def _transforms(pairs, augment):
    """Checks every crop and returns the set of (flip, k) transforms that were used."""
    originals = [read_image(p.clear) for p in pairs]
    ds = paired_dataset(pairs, batch_size=4, crop_size=8, augment=augment, seed=1, repeat=True)
    used = set()
    for hazy, clear in _arrays(ds, 4):
        assert hazy.shape == clear.shape == (4, 8, 8, 3) and hazy.dtype == np.float32
        assert 0.0 <= hazy.min() and hazy.max() <= 1.0
        np.testing.assert_allclose(hazy, 0.5 * clear + 0.25, atol=1e-4)  # same window & turn
        for crop in clear:
            found = [t for t in (_find_window(crop, image) for image in originals) if t]
            assert len(found) == 1
            used.add(found[0])
    return used


def test_paired_crops_are_identical_transforms(pairs):
    assert _transforms(pairs, augment=False) == {(False, 0)}
    used = _transforms(pairs, augment=True)
    assert len(used) >= 4 and any(flip for flip, _ in used) and any(k % 2 for _, k in used)


def test_augmentation_varies_and_is_deterministic(pairs):
    def run(seed):
        return _arrays(paired_dataset(pairs, 3, crop_size=8, seed=seed, repeat=True), 4)

    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_epochs_differ_but_replay_identically(pairs):
    def two_epochs():
        ds = paired_dataset(pairs, 6, crop_size=8, seed=3)
        return _arrays(ds) + _arrays(ds)

    run1, run2 = two_epochs(), two_epochs()
    assert len(run1) == 2 and not np.array_equal(run1[0][0], run1[1][0])
    for a, b in zip(run1, run2):
        np.testing.assert_array_equal(a[0], b[0])


def test_cache_gives_the_same_stream(pairs):
    plain = _arrays(paired_dataset(pairs, 2, crop_size=8, seed=4))
    cached = _arrays(paired_dataset(pairs, 2, crop_size=8, seed=4, cache=True))
    for a, b in zip(plain, cached):
        np.testing.assert_array_equal(a[0], b[0])


def test_full_images_non_square_keep_shape(pairs):
    for hazy, clear in _arrays(paired_dataset(pairs, 2, augment=True, seed=0)):
        assert hazy.shape == clear.shape == (2, H, W, 3)  # rot90 limited to 0/180
        np.testing.assert_allclose(hazy, 0.5 * clear + 0.25, atol=1e-4)


def test_validation_dataset_is_ordered_full_images(pairs):
    batches = _arrays(validation_dataset(pairs))
    assert len(batches) == len(pairs)
    for (hazy, clear), pair in zip(batches, pairs):
        np.testing.assert_array_equal(hazy[0], read_image(pair.hazy))
        np.testing.assert_array_equal(clear[0], read_image(pair.clear))


def test_image_dataset(pairs):
    paths = [p.clear for p in pairs]
    batches = _arrays(image_dataset(paths, batch_size=4, crop_size=(8, 10), seed=2))
    assert [b.shape for b in batches] == [(4, 8, 10, 3), (2, 8, 10, 3)]
    again = _arrays(image_dataset(paths, batch_size=4, crop_size=(8, 10), seed=2))
    np.testing.assert_array_equal(batches[0], again[0])


def test_pipeline_errors_name_the_file(pairs, tmp_path):
    with pytest.raises(tf.errors.OpError, match=r"0_1\.png.*smaller than crop_size"):
        _arrays(paired_dataset(pairs[:1], 1, crop_size=64))
    write_image(tmp_path / "big.png", np.zeros((H + 2, W, 3)))
    with pytest.raises(tf.errors.OpError, match=r"big\.png: size .* differs"):
        _arrays(paired_dataset([(pairs[0].hazy, str(tmp_path / "big.png"))], 1))
    with pytest.raises(tf.errors.OpError, match=r"missing\.png: no such file"):
        _arrays(image_dataset([str(tmp_path / "missing.png")], 1))
    with pytest.raises(ValueError, match="empty"):
        paired_dataset([], 1)
    with pytest.raises(ValueError, match="crop_size"):
        paired_dataset(pairs, 1, crop_size=0)
