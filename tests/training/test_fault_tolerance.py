"""Preemption safety: SIGKILL at random moments and resume, kills during a checkpoint write,
leftover temporary checkpoints, corrupt backups and backups of another model.

What can honestly be asserted after kills and resumes (``run.backup_every_steps`` gives
step-level backups):
- training completes, with the SAME number of optimizer steps as an uninterrupted run (the step
  counter is part of the backup; the epoch and batch to continue from too);
- ``latest.keras`` and the backup always load, and at the end ``latest.keras`` holds the final
  weights (those of the backup); every epoch is in log.csv (an epoch whose end was interrupted
  after its row was written but before the backup that marks it done is re-run from the last
  step backup, so its row can appear twice; ``CheckedBackupAndRestore.after_epoch_callback``);
- the final weights are NOT those of the uninterrupted run: the tf.data iterator is not part of
  the backup, so after a resume the (deterministic) data stream starts again from its first
  batch, and each resumed segment sees other batches than the uninterrupted run did at those
  steps. The weights agree only up to the first kill; the test prints how far they end apart.

The random-kill test is slow (5 training processes: about 1.5 minutes); run it with
``python -m pytest -m slow tests/training/test_fault_tolerance.py``. The others run by default.
"""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_dehaze.cli import main
from tests import REPO as ROOT
from tests.training.tiny_runs import epochs_logged, make_paired_folder, summary_steps, train_args

TRAIN = os.path.join(ROOT, "training", "train.py")


def dehazer_weights(path):
    from keras_dehaze.inference import load_keras_model

    return load_keras_model(path).get_weights()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_paired_folder(tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    """A completed 2-epoch run (in this process); tests copy it before damaging it."""
    out = str(tmp_path_factory.mktemp("run") / "run")
    assert main(train_args(data, out)) == 0
    return out


def copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


# ------------------------------------------------------------------------- random SIGKILLs
EPOCHS, STEPS, BACKUP_EVERY = 12, 4, 2


@pytest.mark.slow
def test_random_sigkills_resume_to_the_same_step_count(data, tmp_path):
    seed = int(os.environ.get("KILL_SEED", "20240601"))
    rng = random.Random(seed)
    extra = ["--set", f"run.backup_every_steps={BACKUP_EVERY}"]
    reference = str(tmp_path / "uninterrupted")
    started = time.time()
    ran = subprocess.run([sys.executable, TRAIN, *train_args(data, reference, EPOCHS, STEPS, extra=extra)[1:]],
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    print(f"uninterrupted run: {time.time() - started:.1f} s, {summary_steps(reference)} steps")

    out = str(tmp_path / "killed")
    cycles, kills = 3, []
    for cycle in range(cycles):
        before = len(epochs_logged(out))
        proc = subprocess.Popen([sys.executable, TRAIN, *train_args(data, out, EPOCHS, STEPS, extra=extra)[1:]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Training has started in this cycle once an epoch more is logged; then a random delay
            # (seeded, printed) puts the kill anywhere in a step, a backup or a checkpoint write.
            deadline = time.time() + 240
            while len(epochs_logged(out)) <= before and proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            delay = rng.uniform(0.0, 1.5)
            time.sleep(delay)
            finished = proc.poll() is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        kills.append((cycle, round(delay, 3), epochs_logged(out)[-1] if epochs_logged(out) else None, finished))
        assert not finished, f"the run finished before kill {cycle + 1}; lengthen it"
    print(f"kill seed {seed}; (cycle, delay s after an epoch logged, last epoch logged, finished): {kills}")

    final = subprocess.run([sys.executable, TRAIN, *train_args(data, out, EPOCHS, STEPS, extra=extra)[1:]],
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-3000:]
    assert "resuming from" in final.stdout
    assert summary_steps(out) == summary_steps(reference) == EPOCHS * STEPS  # same optimizer step count
    logged = epochs_logged(out)
    assert sorted(set(logged)) == list(range(EPOCHS)) and logged[-1] == EPOCHS - 1, logged  # no epoch missing
    final_weights = dehazer_weights(os.path.join(out, "latest.keras"))
    reference_weights = dehazer_weights(os.path.join(reference, "latest.keras"))
    assert all(np.isfinite(w).all() for w in final_weights)
    gap = max(float(np.abs(a - b).max()) for a, b in zip(final_weights, reference_weights))
    print(f"epochs logged {logged}; max |weight difference| to the uninterrupted run: {gap:.3g} "
          "(expected > 0: the data stream restarts at each resume)")

    from keras_dehaze.backend import tf
    from keras_dehaze.callbacks import validate_backup
    from keras_dehaze.config import load_config
    from keras_dehaze.experiment import build_trainer, make_optimizer
    from keras_dehaze.models import build_model

    config = load_config(os.path.join(out, "config.yaml"))  # the backup loads into the run's trainer
    trainer = build_trainer(config, build_model(config.model.name, **config.model.args))
    trainer.compile(optimizer=make_optimizer(config.optim, EPOCHS * STEPS))
    trainer(tf.zeros([1, 16, 16, 3]))
    assert validate_backup(trainer, os.path.join(out, "backup")) is not None  # restores it into trainer
    for a, b in zip(trainer.dehazer.get_weights(), final_weights):  # latest.keras = the final state
        np.testing.assert_array_equal(a, b)
    assert int(tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(out, "backup", "chief")))
               .get_tensor("model/optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")) == EPOCHS * STEPS


# ------------------------------------------------------------------------- kill during a checkpoint write
KILL_DURING_SAVE = """
import os, signal, sys
import keras_dehaze.callbacks as callbacks
real_save = callbacks.save_model_atomic
calls = []

def save_then_die(model, path):
    calls.append(path)
    if len(calls) == 3:  # epoch 2's latest.keras: write half of the temporary file, then SIGKILL
        real_save(model, path + ".full")
        data = open(path + ".full", "rb").read()
        os.remove(path + ".full")
        with open(path + ".tmp.keras", "wb") as f:
            f.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(model, path)

callbacks.save_model_atomic = save_then_die
from keras_dehaze.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_during_a_checkpoint_write_leaves_a_loadable_latest_and_resumes(data, tmp_path):
    out = str(tmp_path / "run")
    script = tmp_path / "die_in_save.py"
    script.write_text(KILL_DURING_SAVE)
    killed = subprocess.run([sys.executable, str(script), *train_args(data, out, epochs=3)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert os.path.getsize(os.path.join(out, "latest.keras.tmp.keras")) > 0  # the half-written file
    before = dehazer_weights(os.path.join(out, "latest.keras"))  # epoch 1's checkpoint, intact
    assert epochs_logged(out) == [0]

    assert main(train_args(data, out, epochs=3)) == 0  # resumes over the leftover
    assert summary_steps(out) == 3 * 3
    assert not os.path.exists(os.path.join(out, "latest.keras.tmp.keras"))  # replaced by a complete save
    after = dehazer_weights(os.path.join(out, "latest.keras"))
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, after))


def test_truncated_leftover_temp_files_do_not_break_resume_or_loading(finished_run, data, tmp_path):
    out = copy_run(finished_run, tmp_path / "run")
    latest = open(os.path.join(out, "latest.keras"), "rb").read()
    with open(os.path.join(out, "latest.keras.tmp.keras"), "wb") as f:
        f.write(latest[: len(latest) // 3])  # a kill mid-write
    with open(os.path.join(out, "best.keras.tmp.keras"), "wb") as f:
        f.write(b"")
    dehazer_weights(os.path.join(out, "latest.keras"))  # the real file is unaffected
    assert main(train_args(data, out, epochs=3)) == 0
    assert summary_steps(out) == 3 * 3
    dehazer_weights(os.path.join(out, "latest.keras"))


# ------------------------------------------------------------------------- damaged or foreign backups
def _backup_files(out):
    chief = os.path.join(out, "backup", "chief")
    return chief, sorted(os.listdir(chief))


@pytest.mark.parametrize("damage", ["truncate_data", "garbage_index", "corrupt_state_file"])
def test_corrupt_backup_is_a_clear_error_and_nothing_is_overwritten(finished_run, data, tmp_path, capsys, damage):
    out = copy_run(finished_run, tmp_path / "run")
    chief, names = _backup_files(out)
    if damage == "truncate_data":
        name = next(n for n in names if ".data-" in n)
        with open(os.path.join(chief, name), "r+b") as f:
            f.truncate(os.path.getsize(os.path.join(chief, name)) // 2)
    elif damage == "garbage_index":
        name = next(n for n in names if n.endswith(".index"))
        with open(os.path.join(chief, name), "wb") as f:
            f.write(os.urandom(200))
    else:
        with open(os.path.join(chief, "checkpoint"), "w") as f:
            f.write("model_checkpoint_path: {{{ not a text proto")
    kept = {n: open(os.path.join(out, n), "rb").read() for n in ("config.yaml", "summary.json", "latest.keras")}
    assert main(train_args(data, out, epochs=3)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "backup" in err and ("corrupt" in err or "truncated" in err or "unreadable" in err), err
    assert f"Delete {os.path.join(out, 'backup')}" in err
    for name, content in kept.items():  # the rerun with another epochs value did not overwrite them
        assert open(os.path.join(out, name), "rb").read() == content, name


def test_backup_of_another_architecture_is_refused(finished_run, data, tmp_path, capsys):
    out = copy_run(finished_run, tmp_path / "run")
    config = open(os.path.join(out, "config.yaml")).read()
    # other width: every variable's shape differs
    assert main(train_args(data, out, epochs=3, filters=8)) == 2
    err = capsys.readouterr().err
    assert "made for another model" in err and "Traceback" not in err, err
    # another network: Keras itself would fail deep inside the restore with a traceback
    assert main(train_args(data, out, epochs=3, extra=[
        "--set", "model.name=msdehazenet", "--set", "model.args={widths: [4, 8, 16], num_blocks: [1, 1, 1, 1, 1], heads: 1}",
    ])) == 2
    err = capsys.readouterr().err
    assert "made for another model" in err, err
    # another optimizer setup (a constant learning rate is a variable, the cosine schedule is not)
    assert main(train_args(data, out, epochs=3, extra=["--set", "optim.schedule=constant"])) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "optim.schedule" in err, err
    assert open(os.path.join(out, "config.yaml")).read() == config


def test_backup_that_fits_only_partly_is_refused_not_silently_half_restored(tmp_path):
    """Keras restores non-strictly: a network whose first layers fit the backup and whose extra
    layers are not in it would be restored HALF (extra layers random, step count restored)
    without a word. validate_backup (run before every restore) refuses it."""
    from keras_dehaze.backend import keras, tf
    from keras_dehaze.callbacks import CheckedBackupAndRestore, CheckpointError, validate_backup
    from keras_dehaze.trainers import PairedTrainer

    def trainer(layers):
        net = keras.Sequential([keras.Input((None, None, 3))] +
                               [keras.layers.Conv2D(3, 3, padding="same") for _ in range(layers)])
        t = PairedTrainer(net, None)
        t.compile(optimizer=keras.optimizers.SGD(0.1))
        t(tf.zeros([1, 8, 8, 3]))
        return t

    x = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    backup = str(tmp_path / "backup")
    trainer(1).fit(x, x, epochs=1, batch_size=2, verbose=0,
                   callbacks=[CheckedBackupAndRestore(backup, delete_checkpoint=False)])
    assert validate_backup(trainer(1), backup) is not None  # the same network: fine

    plain = trainer(2)  # what Keras alone does with the two-layer network: restores half, silently
    tf.train.Checkpoint(model=plain).restore(tf.train.latest_checkpoint(os.path.join(backup, "chief"))).expect_partial()
    assert int(plain.optimizer.iterations.numpy()) == 1

    with pytest.raises(CheckpointError, match="made for another model"):
        validate_backup(trainer(2), backup)
    with pytest.raises(CheckpointError, match="made for another model"):
        trainer(2).fit(x, x, epochs=2, batch_size=2, verbose=0,
                       callbacks=[CheckedBackupAndRestore(backup, delete_checkpoint=False)])
