"""training/configs/aecrnet_real_pairs.yaml: fine-tuning the bundled network on NTIRE-layout
real-haze pairs, and model.pretrained naming a bundled network."""

import json
import os

import numpy as np
import pytest

from keras_dehaze import pretrained
from keras_dehaze.cli import main
from keras_dehaze.data import write_image
from keras_dehaze.trainers.colabator import PretrainedWeightsError, load_pretrained_weights
from tests import REPO as ROOT

RECIPE = os.path.join(ROOT, "training", "configs", "aecrnet_real_pairs.yaml")


def make_ntire_folder(root, ids, size=32, seed=0):
    rng = np.random.default_rng(seed)
    for i in ids:
        clear = rng.uniform(0, 1, (size, size, 3))
        write_image(str(root / f"{i:02d}_GT.png"), clear)
        write_image(str(root / f"{i:02d}_hazy.png"), 0.4 * clear + 0.5)
    return str(root)


def test_recipe_fine_tunes_the_bundled_network_on_ntire_pairs(tmp_path):
    from keras_dehaze.data import find_pairs, validation_dataset
    from keras_dehaze.trainers.common import capped_psnr

    train = make_ntire_folder(tmp_path / "train", [1, 2, 3])
    val = make_ntire_folder(tmp_path / "val", [4], seed=1)
    out = str(tmp_path / "run")
    args = ["train", "--config", RECIPE, "--set", f"data.train={train}", "--set", f"data.val={val}",
            "--set", f"run.out_dir={out}", "--set", "data.crop_size=16", "--set", "data.batch_size=2",
            "--set", "optim.epochs=1", "--set", "optim.steps_per_epoch=2", "--set", "run.tensorboard=false",
            "--set", "run.verbose=0"]
    assert main(args) == 0

    # "before" is the bundled network itself on the validation pair: its weights were loaded
    hazy, clear = next(iter(validation_dataset(find_pairs(val))))
    bundled = pretrained.load_pretrained(pretrained.AECRNET)
    expected = float(capped_psnr(np.clip(bundled(hazy).numpy(), 0, 1), clear)[0])
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["before"]["val_psnr"] == pytest.approx(expected, abs=1e-3)
    assert summary["steps"] == 2 and os.path.exists(os.path.join(out, "latest.keras"))


def test_bundled_name_into_another_architecture_is_refused():
    from keras_dehaze.models import build_model

    with pytest.raises(PretrainedWeightsError, match="does not match"):
        load_pretrained_weights(build_model("aecrnet", filters=4), pretrained.AECRNET)


def test_bundled_weights_into_the_same_shapes_but_other_layers_are_refused():
    from keras_dehaze.models import build_model

    # global_residual changes no weight shape, only the output: loading would "work" and be wrong
    with pytest.raises(PretrainedWeightsError, match="layers differ: Add 'residual'"):
        load_pretrained_weights(build_model("aecrnet", global_residual=False), pretrained.AECRNET)
    load_pretrained_weights(build_model("aecrnet", global_residual=True), pretrained.AECRNET)


def test_unknown_name_lists_the_bundled_networks():
    from keras_dehaze.models import build_model

    with pytest.raises(PretrainedWeightsError, match=f"not found: aecrnet_nope .*{pretrained.AECRNET}"):
        load_pretrained_weights(build_model("aecrnet", filters=4), "aecrnet_nope")
