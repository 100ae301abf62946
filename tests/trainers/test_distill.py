"""Distillation trainer: loss definition, learning, tf.distribute and resume."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_dehaze.backend import keras, tf
from keras_dehaze.config import ConfigError, load_config
from keras_dehaze.trainers import DistillTrainer, PairedTrainer
from tests import REPO as ROOT
from tests.training.tiny_runs import make_paired_folder, summary_steps, train_args



def tiny_student(seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(8, 3, padding="same")(x)
    return keras.Model(x, keras.layers.Add()([x, keras.layers.Conv2D(3, 1)(h)]), name="student")


def affine_teacher(scale=0.7, shift=0.2):
    """A frozen 'dehazer' y = scale * x + shift (a 1x1 conv with fixed weights)."""
    x = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(3, 1, name="affine")
    model = keras.Model(x, conv(x), name="affine_teacher")
    conv.set_weights([np.eye(3, dtype=np.float32)[None, None] * scale, np.full(3, shift, np.float32)])
    return model


def identity_teacher():
    x = keras.Input((None, None, 3))
    return keras.Model(x, keras.layers.Activation("linear")(x), name="identity")


def batch(seed=0, n=4, size=16):
    rng = np.random.default_rng(seed)
    clear = rng.uniform(0, 1, (n, size, size, 3)).astype(np.float32)
    hazy = (0.6 * clear + 0.4 * 0.9).astype(np.float32)
    return tf.constant(hazy), tf.constant(clear)


def test_identity_teacher_with_ground_truth_gives_the_paired_l1():
    hazy, clear = batch()
    student = tiny_student()
    distill = DistillTrainer(student, identity_teacher(), gt_weight=1.0)
    paired = PairedTrainer(student, None, cr_weight=0.0)
    total, l1_gt, _, _ = distill.per_example_losses((hazy, clear), training=False)
    l1, _, _ = paired.per_example_losses(hazy, clear, training=False)
    np.testing.assert_allclose(total.numpy(), l1.numpy(), rtol=1e-6)
    np.testing.assert_allclose(l1_gt.numpy(), l1.numpy(), rtol=1e-6)


def test_mix_of_ground_truth_and_teacher_and_images_without_ground_truth():
    hazy, clear = batch()
    student = tiny_student()
    teacher = affine_teacher()
    out = student(hazy).numpy()
    target = teacher(hazy).numpy()
    l1 = lambda a, b: np.abs(a - b).mean(axis=(1, 2, 3))  # noqa: E731
    has_gt = tf.constant([1.0, 0.0, 1.0, 0.0])
    trainer = DistillTrainer(student, teacher, gt_weight=0.3)
    total, _, _, _ = trainer.per_example_losses((hazy, clear, has_gt), training=False)
    expected = np.where(has_gt.numpy() > 0, 0.3 * l1(out, clear.numpy()) + 0.7 * l1(out, target), l1(out, target))
    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-5)


def test_student_learns_the_teacher_on_a_toy_problem():
    hazy, _ = batch(n=8)
    trainer = DistillTrainer(tiny_student(), affine_teacher(), gt_weight=0.0)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    data = tf.data.Dataset.from_tensors((hazy, tf.zeros_like(hazy), tf.zeros([8]))).repeat()
    history = trainer.fit(data, epochs=6, steps_per_epoch=20, verbose=0).history["l1_teacher"]
    assert history[-1] < 0.3 * history[0], history


def test_validation_reports_student_teacher_and_agreement():
    hazy, clear = batch()
    teacher = affine_teacher(1.0, 0.0)  # the identity as a conv: teacher PSNR = hazy PSNR
    trainer = DistillTrainer(tiny_student(), teacher)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    scores = trainer.evaluate(tf.data.Dataset.from_tensors((hazy, clear)), return_dict=True, verbose=0)
    hazy_psnr = tf.reduce_mean(tf.image.psnr(hazy, clear, 1.0)).numpy()
    assert scores["teacher_psnr"] == pytest.approx(hazy_psnr, abs=1e-3)
    assert {"psnr", "ssim", "teacher_ssim", "agreement_psnr"} <= set(scores)


def test_config_errors_name_the_problem():
    from keras_dehaze.models import build_model

    model = build_model("aecrnet", filters=4)
    with pytest.raises(ConfigError, match="distill.teacher is empty"):
        DistillTrainer.from_experiment_config(load_config(overrides=["trainer.name=distill"]), model)
    with pytest.raises(ConfigError, match="neither a preset"):
        DistillTrainer.from_experiment_config(
            load_config(overrides=["trainer.name=distill", "distill.teacher=no_such_teacher"]), model)
    with pytest.raises(ConfigError, match="gt_weight"):
        DistillTrainer.from_experiment_config(
            load_config(overrides=["distill.teacher=lkdnet_t_its", "distill.gt_weight=2"]), model)


MIRRORED_SCRIPT = """
import numpy as np
from keras_dehaze.backend import keras, tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_dehaze.trainers import DistillTrainer
from tests.trainers.test_distill import affine_teacher, batch, tiny_student

hazy, clear = batch(n=4)
data = (hazy, clear, tf.constant([1.0, 0.0, 1.0, 0.0]))

def one_step(strategy):
    with strategy.scope():
        trainer = DistillTrainer(tiny_student(), affine_teacher(), gt_weight=0.5)
        trainer.compile(optimizer=keras.optimizers.SGD(0.5))
    trainer.fit(tf.data.Dataset.from_tensors(data), epochs=1, verbose=0, shuffle=False)
    return trainer.dehazer.get_weights()

single = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
mirrored = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
for a, b in zip(single, mirrored):
    np.testing.assert_allclose(a, b, atol=1e-6)
print("OK")
"""


def test_a_mirrored_step_on_two_cpus_equals_the_single_device_step():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def _teacher_file(tmp_path):
    path = str(tmp_path / "teacher.keras")
    affine_teacher().save(path)
    return path


def test_training_run_logs_the_teacher_and_the_agreement(tmp_path):
    """A distill run through `keras-dehaze train` (in this process): the fast counterpart of the
    kill-and-resume run below, which is under -m slow."""
    from keras_dehaze.cli import main

    data = make_paired_folder(tmp_path / "pairs")
    out = str(tmp_path / "run")
    assert main(train_args(data, out, epochs=1, steps=2, extra=[
        "--set", "trainer.name=distill", "--set", f"distill.teacher={_teacher_file(tmp_path)}",
        "--set", f"distill.hazy=[{tmp_path / 'pairs' / 'hazy'}]"])) == 0
    assert summary_steps(out) == 2
    with open(os.path.join(out, "log.csv")) as f:
        header = f.readline()
    assert "val_teacher_psnr" in header and "val_agreement_psnr" in header


@pytest.mark.slow  # two training processes, one killed (about 17 s)
def test_training_run_resumes_after_a_kill(tmp_path):
    data = make_paired_folder(tmp_path / "pairs")
    hazy_only = str(tmp_path / "pairs" / "hazy")
    out = str(tmp_path / "run")
    args = train_args(data, out, epochs=4, steps=3, extra=[
        "--set", "trainer.name=distill", "--set", f"distill.teacher={_teacher_file(tmp_path)}",
        "--set", f"distill.hazy=[{hazy_only}]", "--set", "run.backup_every_steps=1"])
    cmd = [sys.executable, "-m", "keras_dehaze.cli", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 240
    log = os.path.join(out, "log.csv")
    while proc.poll() is None and time.time() < deadline and not os.path.exists(log):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.isdir(os.path.join(out, "backup")), "killed before the first backup"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary_steps(out) == 12
    with open(log) as f:
        header = f.readline()
    assert "val_teacher_psnr" in header and "val_agreement_psnr" in header
