"""rehazy.hazy entries: folders, single image files and glob patterns (`list_hazy`)."""

import os

import numpy as np
import pytest

from keras_dehaze.data import DatasetError, write_image
from keras_dehaze.data.unpaired import list_hazy
from tests import REPO



def _touch(path):
    write_image(str(path), np.full((4, 5, 3), 0.5, np.float32))


@pytest.fixture
def sots(tmp_path):
    """A SOTS-like folder: scenes 1400..1409 x haze levels 1..10, plus real photos."""
    for scene in range(1400, 1410):
        _touch(tmp_path / "sots" / "clear" / f"{scene}.png")
        for k in range(1, 11):
            _touch(tmp_path / "sots" / "hazy" / f"{scene}_{k}.png")
    for name in ("a.jpg", "b.png"):
        _touch(tmp_path / "real" / name)
    (tmp_path / "real" / "README.txt").write_text("not an image")
    return tmp_path


def _names(paths):
    return [os.path.basename(p) for p in paths]


def test_folder_still_works(sots):
    assert _names(list_hazy([sots / "real"])) == ["a.jpg", "b.png"]


def test_glob_selects_scenes_in_natural_order(sots):
    pattern = str(sots / "sots" / "hazy" / "140[5-8]_*.png")
    paths = list_hazy([pattern, str(sots / "real")])
    names = _names(paths)
    assert len(names) == 4 * 10 + 2
    assert names[:11] == [f"1405_{k}.png" for k in range(1, 11)] + ["1406_1.png"]  # 1405_2 before 1405_10
    assert {n.split("_")[0] for n in names[:40]} == {"1405", "1406", "1407", "1408"}
    assert names[40:] == ["a.jpg", "b.png"]


def test_single_file_and_duplicates(sots):
    one = str(sots / "sots" / "hazy" / "1409_3.png")
    paths = list_hazy([one, str(sots / "sots" / "hazy" / "1409_*.png"), one])
    assert paths[0] == one and len(paths) == 10 and len(set(paths)) == 10  # listed twice: kept once


def test_pattern_matching_nothing_is_an_error(sots):
    pattern = str(sots / "sots" / "hazy" / "15*_*.png")
    with pytest.raises(DatasetError, match="matches no image"):
        list_hazy([pattern])
    with pytest.raises(DatasetError, match="matches no image"):  # matches only non-images
        list_hazy([str(sots / "real" / "*.txt")])


def test_missing_path_and_non_image_file(sots):
    with pytest.raises(DatasetError, match="does not exist"):
        list_hazy([str(sots / "nowhere")])
    with pytest.raises(DatasetError, match="not an image"):
        list_hazy([str(sots / "real" / "README.txt")])


def test_ablation_config_hazy_entries_are_patterns():
    from keras_dehaze.config import load_config

    config = load_config(os.path.join(REPO, "training/configs/rehazy_ablation_cpu.yaml"))
    assert any("140[5-8]_*" in entry for entry in config.rehazy.hazy)
    assert not any(config.data.train)  # clean images only from rehazy.clean: the hazy scenes cannot leak
    assert config.rehazy.clean_only_steps > 0
