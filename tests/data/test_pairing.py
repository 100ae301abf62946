"""Dataset pairing (keras_dehaze/data/pairing.py): every layout and error, on tiny generated folders."""

import os

import numpy as np
import pytest

from keras_dehaze.data import DatasetError, Pair, find_pairs, list_images, split_by_scene, write_image


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


