"""Tiny training runs shared by the tests of training/ and of the trainers: a folder of paired
images, the arguments of `keras-dehaze train` for a run of a few steps, and readers of its logs."""

import csv
import json
import os

import numpy as np

from keras_dehaze.data import write_image


def make_paired_folder(root, n=4, size=24, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        clear = rng.uniform(0, 1, (size, size, 3))
        write_image(str(root / "GT" / f"{i:02d}.png"), clear)
        write_image(str(root / "hazy" / f"{i:02d}.png"), 0.6 * clear + 0.36)
    return str(root)


def train_args(data, out, epochs=2, steps=3, filters=4, extra=()):
    """Arguments of `keras-dehaze train` for a tiny run (AE-CR-Net filters=4, crop 16, no CR)."""
    return ["train", "--set", f"data.train={data}", "--set", "data.val_scenes=['03']", "--set", f"run.out_dir={out}",
            "--set", f"model.args.filters={filters}", "--set", "data.crop_size=16", "--set", "data.batch_size=2",
            "--set", f"optim.epochs={epochs}", "--set", f"optim.steps_per_epoch={steps}",
            "--set", "trainer.cr_weight=0", "--set", "run.tensorboard=false", "--set", "run.verbose=0", *extra]


def summary_steps(out):
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)["steps"]


def epochs_logged(out):
    path = os.path.join(out, "log.csv")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]
