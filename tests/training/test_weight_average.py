"""optim.ema: the moving average of the weights for validation and checkpoints, the raw weights
for training and backups."""

import csv
import os

import numpy as np
import pytest

from keras_dehaze.backend import keras, tf
from keras_dehaze.callbacks import WeightAverage
from keras_dehaze.cli import main
from keras_dehaze.config import ConfigError, load_config
from tests import REPO
from tests.training.tiny_runs import make_paired_folder, train_args

MOMENTUM = 0.5  # large steps of the average, so a wrong order of swaps shows


class Recorder(keras.callbacks.Callback):
    """Copies the model's weights at every event it is told to watch."""

    def __init__(self):
        super().__init__()
        self.after_step, self.at_validation, self.at_epoch_end, self.at_epoch_begin = [], [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.after_step.append(self.model.get_weights())

    def on_test_begin(self, logs=None):
        self.at_validation.append(self.model.get_weights())

    def on_epoch_begin(self, epoch, logs=None):
        self.at_epoch_begin.append(self.model.get_weights())

    def on_epoch_end(self, epoch, logs=None):
        self.at_epoch_end.append(self.model.get_weights())


def numpy_average(initial, steps, momentum):
    average = [w.copy() for w in initial]
    history = []
    for weights in steps:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights)]
        history.append(average)
    return history


def assert_weights_close(a, b):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_validation_and_epoch_end_see_the_average_training_the_raw_weights():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(0.05, use_ema=True, ema_momentum=MOMENTUM), loss="mae")
    initial = model.get_weights()
    x = np.random.default_rng(0).normal(size=(12, 4)).astype("float32")
    y = np.random.default_rng(1).normal(size=(12, 2)).astype("float32")
    steps_per_epoch = 3
    swap_in, swap_out = WeightAverage(model.optimizer, model.trainable_variables).callbacks()
    watch_raw, watch_average = Recorder(), Recorder()
    model.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), verbose=0, shuffle=False,
              callbacks=[watch_raw, swap_in, watch_average, swap_out])

    reference = numpy_average(initial, watch_raw.after_step, MOMENTUM)
    assert len(reference) == 2 * steps_per_epoch
    for epoch in range(2):
        last_step = (epoch + 1) * steps_per_epoch - 1
        # validation and the epoch end (checkpoints) see the average of all steps so far
        assert_weights_close(watch_average.at_validation[epoch], reference[last_step])
        assert_weights_close(watch_average.at_epoch_end[epoch], reference[last_step])
        # while the last steps of training moved the raw weights elsewhere
        assert not np.allclose(watch_average.at_epoch_end[epoch][0], watch_raw.after_step[last_step][0])
    # the next epoch trains on from the raw weights, not from the average
    assert_weights_close(watch_raw.at_epoch_begin[1], watch_raw.after_step[steps_per_epoch - 1])
    # and fit ends with the average in the model (tf_keras' finalize_variable_values)
    assert_weights_close(model.get_weights(), reference[-1])


def test_needs_an_optimizer_with_an_average():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="use_ema=True"):
        WeightAverage(keras.optimizers.Adam(), model.trainable_variables)


def test_training_run_checkpoints_the_average_and_backs_up_both(tmp_path):
    from keras_dehaze.callbacks import validate_backup
    from keras_dehaze.data import find_pairs, split_by_scene, validation_dataset
    from keras_dehaze.experiment import build_trainer, make_optimizer
    from keras_dehaze.inference import load_keras_model
    from keras_dehaze.models import build_model
    from keras_dehaze.trainers.common import capped_psnr

    data = make_paired_folder(tmp_path / "data")
    out = str(tmp_path / "run")
    assert main(train_args(data, out, epochs=2, steps=3, extra=["--set", f"optim.ema={MOMENTUM}", "--set", "optim.lr=0.01"])) == 0
    latest = load_keras_model(os.path.join(out, "latest.keras"))

    # the logged validation PSNR is that of latest.keras (the average) on the held-out scene
    _, val_pairs = split_by_scene(find_pairs(data), val_scenes=["03"])
    hazy, clear = next(iter(validation_dataset(val_pairs)))
    psnr = float(capped_psnr(tf.clip_by_value(latest(hazy), 0.0, 1.0), clear)[0])
    with open(os.path.join(out, "log.csv")) as f:
        logged = float(list(csv.DictReader(f))[-1]["val_psnr"])
    assert psnr == pytest.approx(logged, abs=1e-3)

    # the backup holds the raw weights; its optimizer slot holds the average = latest.keras
    config = load_config(os.path.join(out, "config.yaml"))
    trainer = build_trainer(config, build_model(config.model.name, **config.model.args))
    trainer.compile(optimizer=make_optimizer(config.optim, 6))
    trainer(tf.zeros([1, 16, 16, 3]))
    assert validate_backup(trainer, os.path.join(out, "backup")) is not None
    variables = trainer.dehazer.trainable_variables
    trainer.optimizer.build(variables)  # its slots take their values from the backup now
    raw = [v.numpy() for v in variables]
    expected = [w.numpy() for w in latest.trainable_variables]
    assert max(float(np.abs(a - b).max()) for a, b in zip(raw, expected)) > 1e-4
    average = WeightAverage(trainer.optimizer, variables)
    average.use_average()
    assert_weights_close([v.numpy() for v in variables], expected)


def test_bad_momentum_and_colabator_are_config_errors(tmp_path):
    from keras_dehaze.experiment import make_optimizer
    from keras_dehaze.trainers.colabator import ColabatorTrainer

    with pytest.raises(ConfigError, match="optim.ema must be in"):
        make_optimizer(load_config(overrides=["optim.ema=1.5"]).optim, 10)
    config = load_config(overrides=["trainer.name=colabator", "optim.ema=0.99"])
    with pytest.raises(ConfigError, match="colabator.ema_rate"):
        ColabatorTrainer.from_experiment_config(config, build_tiny_model())


def build_tiny_model():
    from keras_dehaze.models import build_model

    return build_model("aecrnet", filters=4)


MIRRORED_SCRIPT = """
import numpy as np
from keras_dehaze.backend import keras, tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_dehaze.callbacks import WeightAverage
from tests.training.test_weight_average import MOMENTUM, Recorder, assert_weights_close, numpy_average

x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
y = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(0.05, use_ema=True, ema_momentum=MOMENTUM), loss="mae")
initial = model.get_weights()
swap_in, swap_out = WeightAverage(model.optimizer, model.trainable_variables).callbacks()
raw, seen = Recorder(), Recorder()
model.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), verbose=0, shuffle=False,
          callbacks=[raw, swap_in, seen, swap_out])
reference = numpy_average(initial, raw.after_step, MOMENTUM)
assert_weights_close(seen.at_validation[1], reference[3])
assert_weights_close(raw.at_epoch_begin[1], raw.after_step[1])
assert_weights_close(model.get_weights(), reference[-1])
print("OK")
"""


def test_swaps_under_a_mirrored_strategy():
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
