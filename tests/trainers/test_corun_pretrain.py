"""CORUN pretraining trainer: train step, loss vs an independent recomputation, the transmission
view, the single-output checkpoint, errors, the `corun` config section and an experiment run."""

import os

import numpy as np
import pytest

from keras_dehaze.backend import keras, tf
from keras_dehaze.config import Config, ConfigError, from_dict, load_config, to_dict
from keras_dehaze.data import write_image
from keras_dehaze.losses.corun_loss import CORUNLoss, rehaze
from keras_dehaze.models import CORUN, AECRNet
from keras_dehaze.physics.corun_haze import random_corun_haze
from keras_dehaze.trainers import TRAINERS
from keras_dehaze.trainers.corun_pretrain import CORUNPretrainTrainer, NoTransmissionError, transmission_view
from tests import REPO

TINY = dict(stages=2, width=4, levels=1)  # 16 px inputs: any size works (padding to a multiple of 2)


def _batch(n=2, size=16, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0.05, 0.95, (n, size, size, 3)).astype("float32")
    depth = np.tile(np.linspace(0.1, 1.0, size, dtype="float32")[None, :, None, None], (n, 1, size, 1))  # far at bottom
    return tf.constant(clean), tf.constant(depth)


def _trainer(loss=None, seed=7, **kwargs):
    keras.utils.set_random_seed(1)
    trainer = CORUNPretrainTrainer(CORUN(**TINY), loss if loss is not None else CORUNLoss(contrastive_weight=0),
                                   seed=seed, **kwargs)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    return trainer


@pytest.fixture(scope="module")
def hed_loss():
    return CORUNLoss(feature_extractor="hed_vgg16")


def test_train_step_changes_weights_and_loss_equals_an_independent_corun_loss(hed_loss):
    trainer = _trainer(hed_loss)
    clean, depth = _batch()
    before = [w.numpy() for w in trainer.dehazer.weights]
    # Independent recomputation with the weights before the step: the documented per-step seed
    # (step 0, replica 0), the reference synthesis on nearness = 1 - depth (normalised over the
    # whole image, so not per crop), CORUN built with return_transmission=True and CORUNLoss
    # called directly.
    fold = tf.random.experimental.stateless_fold_in
    seed = fold(fold(tf.constant([7, 0], tf.int32), 0), 0)
    hazy = random_corun_haze(clean, 1.0 - depth, seed=seed, degrade=True, normalize=False)["hazy"]
    reference = CORUN(**TINY, return_transmission=True)
    reference.set_weights(before)
    dehazed, t = reference(hazy, training=True)
    expected = hed_loss(dehazed, t, clean, hazy).numpy()
    terms = hed_loss.terms(dehazed, t, clean, hazy)

    logs = trainer.train_step(((clean, depth), tf.zeros_like(clean)))  # a hazy element is ignored
    assert set(logs) == {"loss", "pix", "asm", "cr"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert float(logs["cr"]) > 0 and float(logs["asm"]) > 0
    np.testing.assert_allclose(float(logs["loss"]), expected.mean(), rtol=1e-5)
    for log_key, term in (("pix", "pixel"), ("asm", "asm"), ("cr", "contrastive")):
        np.testing.assert_allclose(float(logs[log_key]), terms[term].numpy().mean(), rtol=1e-5)
    changed = [not np.array_equal(a, w.numpy()) for a, w in zip(before, trainer.dehazer.weights)]
    assert sum(changed) >= len(trainer.dehazer.trainable_weights) - 1  # (the last T-CPMM output may be unused)
    assert int(trainer.optimizer.iterations) == 1


def test_synthesis_uses_nearness_and_asm_term_is_zero_for_the_exact_solution():
    trainer = _trainer(haze_ranges=dict(airlight=(1.0, 1.0), airlight_jitter=0.0), degrade=False)
    clean, depth = _batch()
    haze = trainer.synthesize(clean, depth, seed=3)
    t = haze["transmission"].numpy()
    assert t[:, 0].mean() > t[:, -1].mean()  # near rows are clearer
    # The maps are normalised over the whole image before cropping, so the crop is not
    # re-normalised: t = exp(-2 beta depth) (a crop of far scenery stays densely hazed).
    beta = haze["beta"].numpy()[:, None, None, None]
    np.testing.assert_allclose(t, np.exp(-2.0 * beta * depth.numpy()), rtol=1e-5)
    far = trainer.synthesize(clean, depth * 0 + 0.9, seed=3)["transmission"].numpy()
    np.testing.assert_allclose(far, np.exp(-1.8 * beta) + 0 * far, rtol=1e-5)  # no haze-free point
    # With A = 1 (CORUN's simplified ASM) the true J and T reproduce P exactly: asm term 0.
    terms = CORUNLoss(contrastive_weight=0).terms(clean, haze["transmission"], clean, haze["hazy"])
    np.testing.assert_allclose(terms["asm"].numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(terms["pixel"].numpy(), 0.0, atol=0)
    wrong = CORUNLoss(contrastive_weight=0).terms(clean, 1.0 - haze["transmission"], clean, haze["hazy"])
    assert float(tf.reduce_min(wrong["asm"])) > 1e-3
    np.testing.assert_allclose(rehaze(clean, haze["transmission"]).numpy(), haze["hazy"].numpy(), atol=1e-6)


def test_transmission_view_equals_return_transmission_and_shares_the_weights():
    keras.utils.set_random_seed(2)
    single = CORUN(stages=3, width=4, levels=2)
    view = transmission_view(single)
    assert {id(v) for v in view.trainable_variables} == {id(v) for v in single.trainable_variables}
    both = CORUN(stages=3, width=4, levels=2, return_transmission=True)
    both.set_weights(single.get_weights())
    assert transmission_view(both) is both
    x = tf.random.uniform([1, 12, 20, 3], seed=1)  # not a multiple of 4: padded inside, cropped back
    for got, want in zip(view(x, training=True), both(x, training=True)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)
    assert len(single.outputs) == 1  # the dehazer itself is unchanged


def test_checkpointed_dehazer_is_single_output_with_the_trained_weights(tmp_path):
    from keras_dehaze.callbacks import DehazerCheckpoint
    from keras_dehaze.inference import load_dehazer

    trainer = _trainer()
    clean, depth = _batch()
    initial = [w.numpy() for w in trainer.dehazer.weights]
    trainer.train_step((clean, depth))
    trained = [w.numpy() for w in trainer.dehazer.weights]
    DehazerCheckpoint(trainer.dehazer, str(tmp_path)).on_epoch_end(0, {"val_psnr": 20.0})
    for name in ("best.keras", "latest.keras"):
        dehazer = load_dehazer(str(tmp_path / name))
        assert len(dehazer.model.outputs) == 1 and dehazer.model.output_shape == (None, None, None, 3)
        loaded = dehazer.model.get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(loaded, trained))
        assert not all(np.array_equal(a, b) for a, b in zip(loaded, initial))
        out = dehazer(np.full((20, 24, 3), 0.5, np.float32))
        assert out.shape == (20, 24, 3) and np.isfinite(out).all()


def test_network_without_transmission_raises_a_clear_error():
    with pytest.raises(NoTransmissionError, match="no transmission output.*corun or corun_compact"):
        CORUNPretrainTrainer(AECRNet(filters=4), CORUNLoss(contrastive_weight=0))
    config = load_config(overrides=["trainer.name=corun_pretrain", "model.name=aecrnet", "trainer.cr_weight=0"])
    with pytest.raises(ConfigError, match="model.name 'aecrnet'.*no transmission output"):
        CORUNPretrainTrainer.from_experiment_config(config, AECRNet(filters=4))
    with pytest.raises(ConfigError, match="return_transmission"):
        CORUNPretrainTrainer.from_experiment_config(config, CORUN(**TINY, return_transmission=True))


def test_corun_config_section_round_trip_and_unknown_key():
    assert TRAINERS["corun_pretrain"] is CORUNPretrainTrainer
    # The contrastive weight and features are trainer.cr_weight / trainer.features (one place for
    # every strategy); corun_pretrain's defaults for them are the reference weight and HED VGG16.
    defaults, shared = Config().corun, CORUNPretrainTrainer.resolve_config(
        load_config(overrides=["trainer.name=corun_pretrain"])).trainer
    assert (defaults.asm_weight, shared.cr_weight, shared.features, defaults.degrade) == (
        0.01, 0.2, "hed_vgg16", True)
    demo = load_config(os.path.join(REPO, "training/configs/corun_cpu_demo.yaml"))
    assert demo.trainer.name == "corun_pretrain" and demo.model.name == "corun_compact"
    assert demo.trainer.cr_weight == 0 and demo.corun.clean == ("data/clean_depth",)
    assert demo.data.val_scenes == ("1409",) and 64 <= demo.data.crop_size <= 96
    ref = load_config(os.path.join(REPO, "training/configs/corun_pretrain.yaml"))
    assert ref.model.name == "corun" and (ref.data.crop_size, ref.data.batch_size, ref.optim.lr) == (288, 16, 1e-4)
    assert ref.optim.epochs * ref.optim.steps_per_epoch == 30000
    assert (ref.corun.asm_weight, ref.trainer.cr_weight) == (0.01, 0.2)
    for config in (demo, ref):
        assert from_dict(Config, to_dict(config)) == config
    custom = load_config(overrides=["corun.asm_weight=0.05", "corun.degrade=false", "corun.clean=[a, b]"])
    assert (custom.corun.asm_weight, custom.corun.degrade, custom.corun.clean) == (0.05, False, ("a", "b"))
    with pytest.raises(ConfigError, match="corun.asm_wieght"):
        load_config(overrides=["corun.asm_wieght=0.1"])
    with pytest.raises(ConfigError, match="corun.degrade"):
        load_config(overrides=["corun.degrade=maybe"])


def test_experiment_run_without_clean_images_is_a_config_error(tmp_path):
    from keras_dehaze.experiment import run

    empty = load_config(overrides=["trainer.name=corun_pretrain", "model.name=corun", f"run.out_dir={tmp_path / 'run2'}"])
    with pytest.raises(ConfigError, match="corun_pretrain needs clean images with depth: set corun.clean"):
        run(empty)


@pytest.mark.slow  # a CORUN training run with validation and checkpoints (about 15 s)
def test_experiment_run_end_to_end_writes_loadable_single_output_checkpoints(tmp_path):
    from keras_dehaze.experiment import run
    from keras_dehaze.inference import load_dehazer

    rng = np.random.default_rng(0)
    for scene in ("10", "11", "12"):  # RESIDE layout: clear images + depth recovered from the pairs
        clear = rng.uniform(0.05, 0.7, (24, 24, 3))
        write_image(str(tmp_path / "pairs" / "clear" / f"{scene}.png"), clear)
        write_image(str(tmp_path / "pairs" / "hazy" / f"{scene}_1.png"), 0.6 * clear + 0.35)
    os.makedirs(tmp_path / "clean")
    write_image(str(tmp_path / "clean" / "c1.png"), rng.uniform(0, 1, (20, 28, 3)))
    write_image(str(tmp_path / "clean" / "c1_depth.png"), np.tile(np.linspace(0.1, 1, 28)[None], (20, 1)), bit_depth=16)
    config = load_config(os.path.join(REPO, "training/configs/corun_cpu_demo.yaml"), overrides=[
        f"data.train={tmp_path / 'pairs'}", "data.val_scenes=[12]", "data.crop_size=16", "data.batch_size=2",
        f"corun.clean=[{tmp_path / 'clean'}]", "model.name=corun", "model.args={stages: 2, width: 4, levels: 1}",
        "optim.epochs=1", "optim.steps_per_epoch=2", f"run.out_dir={tmp_path / 'run'}", "run.verbose=0",
    ])
    summary = run(config)
    assert summary["steps"] == 2 and "val_psnr" in summary["after"] and "val_psnr" in summary["before"]
    assert sorted(os.listdir(tmp_path / "run" / "depth_cache")) == ["10_depth.png", "11_depth.png"]  # not 12
    with open(tmp_path / "run" / "log.csv") as f:
        header = f.readline().strip().split(",")
    assert {"loss", "pix", "asm", "cr", "val_psnr", "val_ssim"} <= set(header)
    for name in ("best.keras", "latest.keras"):
        dehazer = load_dehazer(str(tmp_path / "run" / name))
        assert len(dehazer.model.outputs) == 1
        assert dehazer(np.full((24, 24, 3), 0.5, np.float32)).shape == (24, 24, 3)
    empty = load_config(overrides=["trainer.name=corun_pretrain", "model.name=corun", f"run.out_dir={tmp_path / 'run2'}"])
    with pytest.raises(ConfigError, match="corun_pretrain needs clean images with depth: set corun.clean"):
        run(empty)
