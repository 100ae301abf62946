"""End-to-end runs of training/train.py in subprocesses, including SIGKILL and resume.

The kill-and-resume run (two training processes, about 15 s) is under -m slow; the default run
kills and resumes a run in tests/training/test_fault_tolerance.py
(test_kill_during_a_checkpoint_write_leaves_a_loadable_latest_and_resumes)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests import REPO as ROOT
from tests.training.tiny_runs import epochs_logged, make_paired_folder

TRAIN = os.path.join(ROOT, "training", "train.py")


def command(data, out, epochs=6, extra=()):
    return [
        sys.executable, TRAIN, "--config", os.path.join(ROOT, "training/configs/aecrnet_cpu_demo.yaml"),
        "--set", f"data.train={data}", "--set", "data.val_scenes=['03']", "--set", f"run.out_dir={out}",
        "--set", "model.args.filters=4", "--set", "data.crop_size=16", "--set", "data.batch_size=2",
        "--set", f"optim.epochs={epochs}", "--set", "optim.steps_per_epoch=3", "--set", "trainer.cr_weight=0",
        "--set", "run.tensorboard=false", "--set", "run.verbose=2", *extra,
    ]


def test_bad_config_key_fails_before_training(tmp_path):
    result = subprocess.run([sys.executable, TRAIN, "--set", "optim.lrr=1"], capture_output=True, text=True)
    assert result.returncode == 2 and "optim.lrr" in result.stderr


@pytest.mark.slow
def test_killed_run_resumes_from_last_epoch(tmp_path):
    data = make_paired_folder(tmp_path / "data")
    out = str(tmp_path / "run")
    proc = subprocess.Popen(command(data, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while len(epochs_logged(out)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stdout.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before_kill = epochs_logged(out)
    assert 2 <= len(done_before_kill) < 6

    result = subprocess.run(command(data, out), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming from" in result.stdout
    epochs = epochs_logged(out)
    assert epochs[: len(done_before_kill)] == done_before_kill
    assert sorted(set(epochs)) == list(range(6))  # continued, not restarted from epoch 0
    assert epochs.count(0) == 1
    import json

    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["steps"] == 6 * 3  # same number of optimizer steps as an uninterrupted run
    for name in ("latest.keras", "best.keras", "config.yaml"):
        assert os.path.exists(os.path.join(out, name))
