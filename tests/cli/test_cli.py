"""keras-dehaze dehaze / eval, model loading and bundled-weights round trip."""

import os

import numpy as np
import pytest

from keras_dehaze import pretrained
from keras_dehaze.backend import keras
from keras_dehaze.cli import main
from keras_dehaze.data import read_image, write_image
from keras_dehaze.inference import KerasDehazer, ModelLoadError, load_dehazer
from keras_dehaze.models import AECRNet


def _hazy_image(path, size=(40, 52), seed=0):
    rng = np.random.default_rng(seed)
    clear = rng.uniform(0, 1, (*size, 3))
    write_image(str(path), 0.6 * clear + 0.35)
    return clear


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    # Seeded: how far tiles differ from the whole image depends on the random weights (tile vs
    # whole reached 0.18 in one unseeded full run, against 0.002-0.04 usually).
    keras.utils.set_random_seed(0)
    AECRNet(filters=4, global_residual=True).save(str(path))
    return str(path)


def test_dehaze_files_folders_and_globs_without_touching_inputs(tmp_path, tiny_keras):
    _hazy_image(tmp_path / "in" / "a.png")
    _hazy_image(tmp_path / "in" / "b.jpg", size=(33, 27))
    _hazy_image(tmp_path / "more" / "c.png")
    before = {p: os.path.getmtime(p) for p in (tmp_path / "in" / "a.png", tmp_path / "in" / "b.jpg")}
    code = main(["dehaze", str(tmp_path / "in"), str(tmp_path / "more" / "*.png"), "-o", str(tmp_path / "out"),
                 "--model", tiny_keras, "--quiet"])
    assert code == 0
    for name, size in (("a", (40, 52)), ("b", (33, 27)), ("c", (40, 52))):
        out = read_image(str(tmp_path / "out" / f"{name}_dehazed.png"))
        assert out.shape == (*size, 3)
    assert {p: os.path.getmtime(p) for p in before} == before


def test_one_bad_file_is_reported_and_skipped(tmp_path, capsys):
    _hazy_image(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.png").write_text("not an image")
    data = (tmp_path / "in" / "good.png").read_bytes()
    (tmp_path / "in" / "cut.png").write_bytes(data[: len(data) // 2])
    code = main(["dehaze", str(tmp_path / "in"), str(tmp_path / "missing.png"), "-o", str(tmp_path / "out"),
                 "--model", "dcp", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "bad.png" in err and "cut.png" in err and "missing.png" in err
    assert os.path.exists(tmp_path / "out" / "good_dehazed.png")
    assert not os.path.exists(tmp_path / "out" / "bad_dehazed.png")


def test_output_folder_equal_to_input_never_overwrites(tmp_path, capsys):
    _hazy_image(tmp_path / "x_dehazed.png")
    original = (tmp_path / "x_dehazed.png").read_bytes()
    _hazy_image(tmp_path / "x.png")
    main(["dehaze", str(tmp_path / "x.png"), str(tmp_path / "x_dehazed.png"), "-o", str(tmp_path), "--model", "dcp", "--quiet"])
    assert (tmp_path / "x_dehazed.png").read_bytes() == original  # the input of that name is kept


def test_model_errors_are_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_dehazer(str(tmp_path / "nope.keras"))
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelLoadError, match="not a loadable"):
        load_dehazer(str(tmp_path / "broken.keras"))
    with pytest.raises(ModelLoadError, match="unknown model"):
        load_dehazer("nonet")


def test_keras_dehazer_tiles_large_images_like_the_whole_image(tiny_keras):
    model = load_dehazer(tiny_keras).model
    image = np.random.default_rng(1).uniform(0, 1, (70, 90, 3)).astype("float32")
    whole = KerasDehazer(model, tile=1024)(image)
    tiled = KerasDehazer(model, tile=48, overlap=16)(image)
    assert tiled.shape == image.shape
    assert np.abs(whole - tiled).max() < 0.05  # global pooling in the FA blocks sees only the tile


def test_bundled_weights_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(tmp_path))
    model = AECRNet(filters=4)
    pretrained.export_pretrained(model, "tiny", "aecrnet", {"filters": 4}, {"trained_on": "nothing"})
    assert pretrained.available() == ["tiny"]
    loaded = pretrained.load_pretrained("tiny")
    x = np.random.default_rng(0).uniform(0, 1, (1, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=2e-3)  # float16 weights
    assert pretrained.metadata("tiny")["trained_on"] == "nothing"
    os.remove(tmp_path / "tiny.npz")
    with pytest.raises(FileNotFoundError, match="missing"):
        pretrained.load_pretrained("tiny")


def test_eval_writes_tables_csv_and_grid_with_baselines(tmp_path, tiny_keras, capsys):
    for i in range(2):
        clear = _hazy_image(tmp_path / "data" / "hazy" / f"{i}.png", seed=i)
        write_image(str(tmp_path / "data" / "GT" / f"{i}.png"), clear)
    code = main(["eval", str(tmp_path / "data"), "--model", tiny_keras, "-o", str(tmp_path / "res")])
    assert code == 0
    report = (tmp_path / "res" / "report.md").read_text()
    for name in ("identity", "dcp", "tiny.keras", "PSNR", "CIEDE2000", "whole image"):
        assert name in report
    rows = (tmp_path / "res" / "data.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3  # header + 2 images x 3 models
    assert read_image(str(tmp_path / "res" / "data_examples.png")).shape[0] > 100


def test_eval_without_ground_truth_gives_no_reference_scores(tmp_path):
    for i in range(2):
        _hazy_image(tmp_path / "real" / f"photo{i}.png", size=(64, 64), seed=i)
    code = main(["eval", str(tmp_path / "real"), "--model", "dcp", "-o", str(tmp_path / "res")])
    assert code == 0
    report = (tmp_path / "res" / "report.md").read_text()
    assert "no GT" in report and "haze density" in report and "BRISQUE" in report
    rows = (tmp_path / "res" / "real.csv").read_text().splitlines()
    assert rows[0].startswith("image,model,seconds,haze_density,quality") and len(rows) == 1 + 2 * 2


def test_eval_keeps_models_with_the_same_file_name_apart(tmp_path, tiny_keras):
    for i in range(2):
        clear = _hazy_image(tmp_path / "data" / "hazy" / f"{i}.png", seed=i)
        write_image(str(tmp_path / "data" / "GT" / f"{i}.png"), clear)
    copies = []
    for run in ("a", "b"):
        os.makedirs(tmp_path / run)
        copies.append(str(tmp_path / run / "best.keras"))
        with open(tiny_keras, "rb") as src, open(copies[-1], "wb") as dst:
            dst.write(src.read())
    assert main(["eval", str(tmp_path / "data"), "--model", copies[0], "--model", copies[1],
                 "-o", str(tmp_path / "res")]) == 0
    rows = (tmp_path / "res" / "data.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 4  # identity, dcp and two separate rows per image, not one merged model
    models = {row.split(",")[1] for row in rows[1:]}
    assert {os.path.normpath(copies[0]), os.path.normpath(copies[1])} <= models


def test_dehaze_tile_option_bounds_tiles_and_rejects_tiny_tiles(tmp_path, tiny_keras, capsys):
    _hazy_image(tmp_path / "big.png", size=(100, 140))
    for tile, out in ((None, "whole"), ("64", "tiled")):
        args = ["dehaze", str(tmp_path / "big.png"), "-o", str(tmp_path / out), "--model", tiny_keras, "--quiet"]
        assert main(args + (["--tile", tile] if tile else [])) == 0
    whole = read_image(str(tmp_path / "whole" / "big_dehazed.png"))
    tiled = read_image(str(tmp_path / "tiled" / "big_dehazed.png"))
    assert tiled.shape == whole.shape == (100, 140, 3)
    assert 0 < np.abs(whole - tiled).max() < 0.05  # really tiled (not identical), and seamless
    with pytest.raises(SystemExit):
        main(["dehaze", str(tmp_path / "big.png"), "--tile", "16"])
    assert "tile side must be at least 64" in capsys.readouterr().err
