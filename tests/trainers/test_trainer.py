import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_dehaze.backend import keras, tf
from keras_dehaze.losses import ContrastiveRegularization
from keras_dehaze.models import AECRNet
from keras_dehaze.trainers import PairedTrainer


def _batch(n=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    clear = rng.uniform(0, 1, (n, size, size, 3)).astype("float32")
    hazy = (0.6 * clear + 0.4 * 0.9).astype("float32")
    return tf.constant(hazy), tf.constant(clear)


def test_train_step_minimises_l1_plus_beta_cr_and_test_step_reports_psnr_ssim():
    hazy, clear = _batch()
    cr = ContrastiveRegularization("hed_vgg16")
    trainer = PairedTrainer(AECRNet(filters=4), cr, cr_weight=0.1)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))  # lr 0: the logged loss is exact
    logs = trainer.train_on_batch(hazy, clear, return_dict=True)
    out = trainer.dehazer(hazy, training=True)
    l1 = tf.reduce_mean(tf.abs(out - clear)).numpy()
    crv = tf.reduce_mean(cr(out, clear, hazy)).numpy()
    np.testing.assert_allclose(logs["l1"], l1, rtol=1e-4)
    np.testing.assert_allclose(logs["cr"], crv, rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], l1 + 0.1 * crv, rtol=1e-4)
    scores = trainer.evaluate(hazy, clear, return_dict=True, verbose=0)
    restored = tf.clip_by_value(trainer.dehazer(hazy, training=False), 0, 1)
    np.testing.assert_allclose(scores["psnr"], tf.reduce_mean(tf.image.psnr(restored, clear, 1.0)), rtol=1e-4)
    assert 0 < scores["ssim"] <= 1


def test_training_reduces_l1_without_cr():
    hazy, clear = _batch(n=2, size=16)
    trainer = PairedTrainer(AECRNet(filters=4, global_residual=True), None)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    first = trainer.train_on_batch(hazy, clear, return_dict=True)["l1"]
    for _ in range(40):
        last = trainer.train_on_batch(hazy, clear, return_dict=True)["l1"]
    assert last < 0.7 * first


def test_frozen_vgg_stays_out_of_trainer_weights_and_checkpoints(tmp_path):
    cr = ContrastiveRegularization("hed_vgg16")
    trainer = PairedTrainer(AECRNet(filters=4), cr)
    trainer(tf.zeros([1, 16, 16, 3]))
    ids = {id(w) for w in trainer.weights}
    assert not any(id(w) in ids for w in cr.extractor.weights)
    path = tf.train.Checkpoint(model=trainer).save(str(tmp_path / "ckpt"))
    saved = int(sum(np.prod(shape) for _, shape in tf.train.list_variables(path)))
    assert saved < trainer.dehazer.count_params() + 1000  # the 14M-parameter VGG is not in it


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from keras_dehaze.backend import keras, tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_dehaze.losses import ContrastiveRegularization
    from keras_dehaze.models import AECRNet
    from keras_dehaze.trainers import PairedTrainer

    rng = np.random.default_rng(0)
    clear = rng.uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    hazy = (0.6 * clear + 0.36).astype("float32")
    keras.utils.set_random_seed(1)
    init = AECRNet(filters=4, global_residual=True).get_weights()

    def one_step(strategy):
        with strategy.scope():
            trainer = PairedTrainer(AECRNet(filters=4, global_residual=True),
                                    ContrastiveRegularization("hed_vgg16"), cr_weight=0.1)
            trainer.compile(optimizer=keras.optimizers.SGD(0.5))
            trainer(tf.zeros([1, 32, 32, 3]))
            trainer.dehazer.set_weights(init)
        ds = tf.data.Dataset.from_tensor_slices((hazy, clear)).batch(4)
        trainer.fit(ds, epochs=1, verbose=0)
        return trainer.dehazer.get_weights()

    single = one_step(tf.distribute.get_strategy())
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored_strategy.num_replicas_in_sync == 2
    mirrored = one_step(mirrored_strategy)
    step = max(float(np.abs(a - b).max()) for a, b in zip(single, init))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored))
    print("STEP", step, "DIFF", diff)
    """
)


@pytest.mark.slow  # a second process building HED-VGG16 twice (about 15 s); the default run checks
# the mirrored step of the distill trainer and of the weight average (test_distill, test_weight_average)
def test_one_step_under_mirrored_strategy_equals_single_device_step():
    """2 logical CPUs (configured before TF starts, hence a subprocess). SGD, not Adam: Adam's
    normalisation would hide a gradient scaled by the number of replicas."""
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("STEP")][-1]
    _, step, _, diff = line.split()
    assert float(step) > 1e-3, "the step must actually move the weights"
    assert float(diff) < 1e-4 * max(1.0, float(step)) + 1e-5, line


# ------------------------------------------------------------------------ interface and registry
def test_unknown_trainer_name_is_a_config_error_listing_the_known_ones(tmp_path, capsys):
    from keras_dehaze.cli import main
    from keras_dehaze.config import ConfigError, load_config
    from keras_dehaze.experiment import validate
    from keras_dehaze.trainers import TRAINERS, get_trainer

    assert {"contrastive", "rehazy", "corun_pretrain", "colabator", "distill"} <= set(TRAINERS)
    with pytest.raises(ConfigError, match="unknown trainer.name 'contrastiv'; known: colabator, contrastive, "):
        get_trainer("contrastiv")
    with pytest.raises(ConfigError, match="unknown trainer.name 'nope'.*distill"):
        validate(load_config(overrides=["trainer.name=nope", f"data.train={tmp_path}"]))
    out = tmp_path / "run"
    assert main(["train", "--set", "trainer.name=nope", "--set", f"data.train={tmp_path}",
                 "--set", f"run.out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "unknown trainer.name 'nope'" in err and "rehazy" in err and not out.exists()


def test_register_trainer_refuses_a_taken_name_and_non_models(monkeypatch):
    from keras_dehaze.trainers import base

    monkeypatch.setattr(base, "TRAINERS", dict(base.TRAINERS))  # registrations end with the test
    with pytest.raises(ValueError, match="'contrastive' is taken by keras_dehaze.trainers.paired.PairedTrainer"):
        base.register_trainer("contrastive")(type("Other", (base.Trainer,), {}))
    with pytest.raises(TypeError, match="keras.Model subclass"):
        base.register_trainer("not_a_model")(object)
    assert base.register_trainer("contrastive")(PairedTrainer) is PairedTrainer  # re-registering: no-op


def test_every_registered_trainer_names_metrics_it_tracks():
    """train_step/test_step return their metrics by name: each name is one of the trackers."""
    from keras_dehaze.losses.corun_loss import CORUNLoss
    from keras_dehaze.models import CORUN
    from keras_dehaze.trainers import TRAINERS, CORUNPretrainTrainer, DistillTrainer, RehazyTrainer
    from keras_dehaze.trainers.colabator import ColabatorTrainer

    built = {
        PairedTrainer: PairedTrainer(AECRNet(filters=4)),
        RehazyTrainer: RehazyTrainer(AECRNet(filters=4)),
        CORUNPretrainTrainer: CORUNPretrainTrainer(CORUN(stages=2, width=4, levels=1), CORUNLoss(contrastive_weight=0)),
        ColabatorTrainer: ColabatorTrainer(AECRNet(filters=4)),
        DistillTrainer: DistillTrainer(AECRNet(filters=4), AECRNet(filters=4)),
    }
    assert set(built) == set(TRAINERS.values())
    for cls, trainer in built.items():
        tracked = [m.name for m in trainer.metrics]
        assert len(tracked) == len(set(tracked)), cls
        assert set(cls.train_metrics) | set(cls.test_metrics) <= set(tracked), cls
        assert {"psnr", "ssim"} <= set(cls.test_metrics), cls  # the run summary and best.keras need them


def test_a_trainer_registered_elsewhere_runs_through_the_experiment(tmp_path, monkeypatch):
    """A new strategy is one Trainer subclass + @register_trainer: the experiment builds it,
    feeds it the paired data, logs its metrics by name and checkpoints its network."""
    import csv
    import json
    import os

    from keras_dehaze.config import load_config
    from keras_dehaze.experiment import run
    from keras_dehaze.trainers import base
    from keras_dehaze.trainers.common import average, capped_psnr, ssim
    from tests.training.tiny_runs import make_paired_folder

    monkeypatch.setattr(base, "TRAINERS", dict(base.TRAINERS))  # registrations end with the test

    @base.register_trainer("l2_only")
    class L2Trainer(base.Trainer):
        train_metrics = ("loss", "l2")
        test_metrics = ("psnr", "ssim")

        def __init__(self, dehazer, **kwargs):
            super().__init__(dehazer, **kwargs)
            self.loss_tracker, self.l2_tracker = keras.metrics.Mean("loss"), keras.metrics.Mean("l2")
            self.psnr_tracker, self.ssim_tracker = keras.metrics.Mean("psnr"), keras.metrics.Mean("ssim")

        @property
        def metrics(self):
            return [self.loss_tracker, self.l2_tracker, self.psnr_tracker, self.ssim_tracker]

        def describe(self):
            return "loss: L2 only (a test strategy)"

        def train_step(self, data):
            hazy, clear = data
            with tf.GradientTape() as tape:
                l2 = tf.reduce_mean(tf.square(self.dehazer(hazy, training=True) - clear), axis=[1, 2, 3])
                loss = average(l2)
            grads = tape.gradient(loss, self.dehazer.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.dehazer.trainable_variables))
            self.loss_tracker.update_state(l2)
            self.l2_tracker.update_state(l2)
            return self.metric_results(self.train_metrics)

        def test_step(self, data):
            hazy, clear = data
            restored = tf.clip_by_value(self.dehazer(hazy, training=False), 0.0, 1.0)
            self.psnr_tracker.update_state(capped_psnr(restored, clear))
            self.ssim_tracker.update_state(ssim(restored, clear))
            return self.metric_results(self.test_metrics)

    out = tmp_path / "run"
    config = load_config(overrides=[
        "trainer.name=l2_only", f"data.train={make_paired_folder(tmp_path / 'pairs')}", "data.val_scenes=['03']",
        "model.args.filters=4", "data.crop_size=16", "data.batch_size=2", "optim.epochs=1",
        "optim.steps_per_epoch=2", f"run.out_dir={out}", "run.tensorboard=false", "run.verbose=0",
    ])
    summary = run(config)
    assert summary["steps"] == 2 and set(summary["after"]) == {"val_psnr", "val_ssim"}
    with open(out / "log.csv") as f:
        row = next(csv.DictReader(f))
    assert {"loss", "l2", "val_psnr", "val_ssim"} <= set(row) and float(row["l2"]) > 0
    assert os.path.exists(out / "latest.keras") and os.path.exists(out / "best.keras")
    with open(out / "summary.json") as f:
        assert json.load(f)["steps"] == 2
    # a shared trainer.* key the strategy does not read is refused, not ignored
    from keras_dehaze.config import ConfigError
    from keras_dehaze.experiment import validate

    with pytest.raises(ConfigError, match=r"trainer.cr_weight is set \(0.1\) but trainer.name 'l2_only' does not use it"):
        validate(load_config(overrides=["trainer.name=l2_only", "trainer.cr_weight=0.1"]))


def test_strategy_defaults_fill_unset_trainer_keys_and_the_run_records_them():
    from keras_dehaze.config import ConfigError, load_config
    from keras_dehaze.experiment import validate
    from keras_dehaze.trainers import get_trainer

    expected = {"contrastive": (0.1, "vgg19"), "colabator": (0.1, "vgg19"), "distill": (0.0, "vgg19"),
                "corun_pretrain": (0.2, "hed_vgg16"), "rehazy": (None, None)}
    for name, (weight, features) in expected.items():
        config = load_config(overrides=[f"trainer.name={name}"])
        assert (config.trainer.cr_weight, config.trainer.features) == (None, None)  # unset in the file
        resolved = get_trainer(name).resolve_config(config).trainer
        assert (resolved.cr_weight, resolved.features) == (weight, features), name
    # what a config sets wins over the strategy's default
    config = load_config(overrides=["trainer.name=distill", "trainer.cr_weight=0.3", "trainer.features=hed_vgg16"])
    assert (validate(config).trainer.cr_weight, validate(config).trainer.features) == (0.3, "hed_vgg16")
    with pytest.raises(ConfigError, match="trainer.cr_start_step is set .* 'colabator' does not use it"):
        validate(load_config(overrides=["trainer.name=colabator", "trainer.cr_start_step=100"]))
    with pytest.raises(ConfigError, match="trainer.features is set .* 'rehazy' does not use it"):
        validate(load_config(overrides=["trainer.name=rehazy", "trainer.features=vgg19"]))
    validate(load_config(overrides=["trainer.name=rehazy", "trainer.cr_weight=0"]))  # 0 = off: allowed


def test_tpu_strategy_is_refused_before_anything_is_created(tmp_path):
    from keras_dehaze.config import ConfigError, load_config
    from keras_dehaze.distribute import STRATEGIES, make_strategy
    from keras_dehaze.experiment import run

    assert STRATEGIES == ("default", "mirrored", "multi_worker")
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="run.strategy must be one of default, mirrored, multi_worker, got 'tpu'"):
        run(load_config(overrides=["run.strategy=tpu", f"data.train={tmp_path}", f"run.out_dir={out}"]))
    assert not out.exists()
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        make_strategy("tpu")
