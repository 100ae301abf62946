"""Rehazy: TF dark-channel prior vs NumPy DCP, depth estimators, semantic encoders, the dual-branch
trainer (phases, gradients, terms switched off), the unpaired pipeline and the experiment run."""

import logging
import os

import numpy as np
import pytest

from keras_dehaze.backend import keras, tf
from keras_dehaze.config import ConfigError, load_config
from keras_dehaze.data import DatasetError, write_image
from keras_dehaze.depth import DCPPriorDepth, ModelFileDepth, build_depth_estimator, clean_depth_pairs
from keras_dehaze.losses.semantic import ModelFileSemantic, build_semantic_encoder, semantic_kl
from keras_dehaze.models import AECRNet, MSDehazeNet
from keras_dehaze.physics import dcp, dcp_tf
from keras_dehaze.trainers import TRAINERS, RehazyTrainer
from tests import REPO

TINY_MS = dict(widths=(8, 16, 16), num_blocks=(1, 1, 1, 1, 1), heads=2)


def _hazy_image(h=48, w=64, seed=0):
    """A textured scene with depth increasing to the top, hazed with the ASM (A = 0.9, 0.85, 0.8)."""
    rng = np.random.default_rng(seed)
    clear = rng.uniform(0.0, 0.6, (h, w, 3)).astype("float32")
    depth = np.linspace(1.0, 0.1, h, dtype="float32")[:, None, None] * np.ones((1, w, 1), "float32")
    t = np.exp(-1.5 * depth)
    return (clear * t + np.array([0.9, 0.85, 0.8], "float32") * (1 - t)).astype("float32")


def _batch(n=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0, 1, (n, size, size, 3)).astype("float32")
    depth = np.tile(np.linspace(0, 1, size, dtype="float32")[None, :, None, None], (n, 1, size, 1))
    hazy = np.stack([_hazy_image(size, size, seed + i) for i in range(n)])
    return tf.constant(clean), tf.constant(depth), tf.constant(hazy)


def _tiny_keras_file(path, out_channels, pooled=False):
    """A small frozen 'pretrained' network saved as .keras (a depth map or an embedding)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(out_channels, 3, padding="same", activation="softplus")(x)
    if pooled:
        x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, x).save(path)
    return str(path)


# ----------------------------------------------------------------------------- DCP in TF


def test_tf_dark_channel_transmission_and_depth_prior_match_numpy_dcp():
    image = _hazy_image()
    airlight = dcp.estimate_airlight(image, dcp.dark_channel(image, 7))
    for patch in (1, 7, 15):
        np.testing.assert_array_equal(dcp_tf.dark_channel(image[None], patch)[0, ..., 0],
                                      dcp.dark_channel(image, patch))
    expected = dcp.depth_from_transmission(dcp.estimate_transmission(image, airlight, 0.95, 7))
    got = dcp_tf.depth_prior(image[None], patch=7, refine=False, airlight=airlight[None], adapt_windows=False)
    np.testing.assert_allclose(got[0, ..., 0], expected, atol=1e-5)
    # refined: the TF guided filter (cumulative-sum box means) against the NumPy/OpenCV one
    t = dcp.estimate_transmission(image, airlight, 0.95, 7)
    refined = dcp.depth_from_transmission(np.clip(dcp.guided_filter(image, t, 10, 1e-3), 0, 1))
    got = dcp_tf.depth_prior(image[None], patch=7, radius=10, airlight=airlight[None], adapt_windows=False)
    np.testing.assert_allclose(got[0, ..., 0], refined, atol=1e-3)
    # the estimator normalises per image to [0, 1]; the hazier (top) rows are farther
    d = DCPPriorDepth(patch=7, radius=10)(image[None]).numpy()[0, ..., 0]
    assert d.max() == pytest.approx(1.0) and d.min() >= 0
    assert d[:12].mean() > d[-12:].mean() + 0.3


def test_tf_airlight_matches_numpy_estimate_airlight():
    rng = np.random.default_rng(1)
    noise = rng.uniform(0, 1, (40, 50, 3)).astype("float32")  # patch 1: no ties in the dark channel
    np.testing.assert_allclose(dcp_tf.estimate_airlight(noise[None], patch=1)[0],
                               dcp.estimate_airlight(noise, dcp.dark_channel(noise, 1)), atol=1e-6)
    image = _hazy_image(64, 80)  # patch 15: ties may pick other pixels of the same haze-opaque region
    a_tf = dcp_tf.estimate_airlight(image[None], patch=15).numpy()[0]
    a_np = dcp.estimate_airlight(image, dcp.dark_channel(image, 15))
    np.testing.assert_allclose(a_tf, a_np, atol=0.03)


# ----------------------------------------------------------------------------- trainer


@pytest.mark.parametrize("network", ["aecrnet", "msdehazenet"])
def test_phase_switch_at_clean_only_steps(network, tmp_path):
    """AECRNet: compiled train step (the tf.cond on optimizer.iterations inside the graph);
    MS-DehazeNet (3 outputs): eager, to keep the test fast (its graph is exercised by the demo)."""
    clean, depth, hazy = _batch(size=16)
    dehazer = AECRNet(filters=4) if network == "aecrnet" else MSDehazeNet(**TINY_MS)
    encoder = ModelFileSemantic(_tiny_keras_file(tmp_path / "enc.keras", 8, pooled=True))
    trainer = RehazyTrainer(dehazer, depth_estimator=DCPPriorDepth(), clean_only_steps=2,
                            semantic_encoder=encoder if network == "aecrnet" else None)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=network == "msdehazenet")
    logs = [trainer.train_on_batch(((clean, depth), hazy), return_dict=True) for _ in range(3)]
    assert int(trainer.optimizer.iterations) == 3
    for step in logs[:2]:
        assert step["clean"] > 0 and step["cons"] == step["depth"] == step["sem"] == 0
    assert logs[2]["cons"] > 0 and logs[2]["depth"] > 0
    assert (logs[2]["sem"] > 0) == (network == "aecrnet")
    np.testing.assert_allclose(logs[2]["loss"], logs[2]["clean"] + logs[2]["cons"] + 0.01 * logs[2]["depth"]
                               + 0.01 * logs[2]["sem"], rtol=1e-5)
    scores = trainer.evaluate(hazy, clean, return_dict=True, verbose=0)  # PairedTrainer's test_step
    assert set(scores) >= {"psnr", "ssim"}


def test_hazy_branch_losses_reach_the_dehazer_and_rehazy_adds_haze(tmp_path):
    _, _, hazy = _batch()
    encoder = ModelFileSemantic(_tiny_keras_file(tmp_path / "enc.keras", 8, pooled=True))
    depth_model = ModelFileDepth(_tiny_keras_file(tmp_path / "depth.keras", 1))
    trainer = RehazyTrainer(AECRNet(filters=4), depth_estimator=depth_model, semantic_encoder=encoder)
    variables = trainer.dehazer.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        losses = [tf.reduce_mean(loss) for loss in trainer.hazy_losses(hazy)]
    for name, loss in zip(("cons", "depth", "sem"), losses):
        assert float(loss) > 0, name
        grads = tape.gradient(loss, variables)
        assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads if g is not None) > 0, name
    rehazed, a0, d0, dbeta = trainer.make_rehazy(hazy)
    assert d0.shape == (2, 32, 32, 1) and a0.shape == (2, 3)
    assert np.all((dbeta.numpy() >= 0.1) & (dbeta.numpy() <= 0.5))
    # Eq. 6 pulls every pixel towards A0 (more haze), the more the farther (d0 larger)
    a = a0.numpy()[:, None, None, :]
    assert np.all(np.abs(rehazed.numpy() - a) <= np.abs(hazy.numpy() - a) + 1e-6)
    np.testing.assert_allclose(rehazed, np.exp(-dbeta.numpy()[:, None, None, None] * d0) * (hazy - a) + a, atol=1e-6)


def test_user_depth_model_from_keras_file_is_used_and_differentiable(tmp_path):
    path = _tiny_keras_file(tmp_path / "depth.keras", 1)
    estimator = build_depth_estimator(path, input_size=(24, 24))
    assert isinstance(estimator, ModelFileDepth) and estimator.differentiable and estimator.haze_invariant
    x = tf.random.uniform([2, 32, 40, 3])
    with tf.GradientTape() as tape:
        tape.watch(x)
        d = estimator(x)
    assert d.shape == (2, 32, 40, 1)
    np.testing.assert_allclose(tf.reduce_max(d, axis=[1, 2, 3]), 1.0, atol=1e-5)
    assert float(tf.reduce_sum(tf.abs(tape.gradient(d, x)))) > 0
    config = load_config(overrides=["trainer.name=rehazy", "rehazy.hazy=[real]", f"rehazy.depth={path}", "rehazy.semantic=none"])
    trainer = RehazyTrainer.from_experiment_config(config, AECRNet(filters=4))
    assert trainer.depth_estimator is trainer.rehazy_depth  # D of L_depth and d0 of Eq. 6 (paper)
    assert isinstance(trainer.depth_estimator, ModelFileDepth)
    clean, depth, hazy = _batch(size=16)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    assert trainer.train_on_batch(((clean, depth), hazy), return_dict=True)["depth"] > 0


def test_a_tflite_depth_model_gives_d0_only_and_cannot_force_the_depth_term(tmp_path):
    inputs = keras.Input((24, 24, 3), batch_size=1)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", activation="softplus")(inputs))
    path = tmp_path / "depth.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    base = ["trainer.name=rehazy", "rehazy.hazy=[real]", "rehazy.semantic=none", f"rehazy.depth={path}"]
    trainer = RehazyTrainer.from_experiment_config(load_config(overrides=base), AECRNet(filters=4))
    assert trainer.depth_estimator is None and isinstance(trainer.rehazy_depth, ModelFileDepth)
    assert "not differentiable (it gives d0 for rehazy generation only)" in trainer.describe()
    with pytest.raises(ConfigError, match="depth_loss=always needs a differentiable"):
        RehazyTrainer.from_experiment_config(load_config(overrides=base + ["rehazy.depth_loss=always"]),
                                             AECRNet(filters=4))


def test_depth_and_semantic_terms_off_when_none_and_logged(caplog):
    config = load_config(overrides=["trainer.name=rehazy", "rehazy.hazy=[real]", "rehazy.depth=none", "rehazy.semantic=none"])
    with caplog.at_level(logging.INFO, logger="keras_dehaze.rehazy"):
        trainer = RehazyTrainer.from_experiment_config(config, AECRNet(filters=4))
    assert trainer.depth_estimator is None and trainer.semantic_encoder is None
    assert isinstance(trainer.rehazy_depth, DCPPriorDepth)  # Eq. 6 still needs d0
    text = trainer.describe()
    assert "depth term: OFF" in text and "semantic term: OFF" in text
    assert "depth term OFF: rehazy.depth is 'none'" in caplog.text
    assert "semantic term OFF: rehazy.semantic is 'none'" in caplog.text
    clean, depth, hazy = _batch(size=16)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    logs = trainer.train_on_batch({"clean": clean, "depth": depth, "hazy": hazy}, return_dict=True)
    assert logs["cons"] > 0 and logs["depth"] == 0 and logs["sem"] == 0
    # the DCP prior is not used for L_depth unless forced: it measures haze, not depth
    auto = RehazyTrainer.from_experiment_config(
        load_config(overrides=["trainer.name=rehazy", "rehazy.hazy=[real]", "rehazy.semantic=none"]), AECRNet(filters=4))
    assert auto.depth_estimator is None and "measures haze" in auto.describe()
    forced = load_config(overrides=["trainer.name=rehazy", "rehazy.hazy=[real]", "rehazy.semantic=none", "rehazy.depth_loss=always"])
    assert isinstance(RehazyTrainer.from_experiment_config(forced, AECRNet(filters=4)).depth_estimator,
                      DCPPriorDepth)


def test_without_hazy_folders_the_trainer_is_clean_branch_only():
    trainer = RehazyTrainer.from_experiment_config(load_config(overrides=["trainer.name=rehazy"]), AECRNet(filters=4))
    assert trainer.depth_estimator is None and trainer.semantic_encoder is None
    assert "hazy branch OFF" in trainer.describe()


def test_semantic_kl_is_zero_for_identical_inputs_and_positive_otherwise():
    encoder = build_semantic_encoder("vgg")
    x = tf.random.uniform([2, 32, 32, 3], seed=1)
    p = encoder(x)
    np.testing.assert_allclose(tf.reduce_sum(p, -1), 1.0, atol=1e-5)
    np.testing.assert_allclose(semantic_kl(p, p), 0.0, atol=1e-6)
    assert np.all(semantic_kl(encoder(tf.reverse(x, [1]) * 0.3), p).numpy() > 0)


# ----------------------------------------------------------------------------- data


def _write_clean_folder(root, names, size=(40, 48), depth=True):
    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    for name in names:
        write_image(os.path.join(root, f"{name}.png"), rng.uniform(0, 1, (*size, 3)))
        if depth:
            ramp = np.tile(np.linspace(0.1, 1.0, size[1])[None], (size[0], 1))
            write_image(os.path.join(root, f"{name}_depth.png"), ramp, bit_depth=16)


def test_unpaired_pipeline_shapes_and_missing_depth_error(tmp_path):
    from keras_dehaze.data.unpaired import find_clean_depth, unpaired_dataset

    _write_clean_folder(tmp_path / "clean", ["a", "b", "c"])
    _write_clean_folder(tmp_path / "hazy", ["h1", "h2"], size=(50, 60), depth=False)
    pairs = find_clean_depth(tmp_path / "clean")
    assert [p.scene for p in pairs] == ["a", "b", "c"]
    ds = unpaired_dataset(pairs, [str(tmp_path / "hazy" / n) for n in ("h1.png", "h2.png")], 2, crop_size=32)
    (clean, depth), hazy = next(iter(ds))
    assert clean.shape == (2, 32, 32, 3) and depth.shape == (2, 32, 32, 1) and hazy.shape == (2, 32, 32, 3)
    assert 0 <= float(tf.reduce_min(depth)) and float(tf.reduce_max(depth)) <= 1
    _write_clean_folder(tmp_path / "clean", ["d", "e"], depth=False)
    with pytest.raises(DatasetError, match=r"2 clean image\(s\).*no depth map.*d\.png, e\.png.*prepare_clean_depth"):
        find_clean_depth(tmp_path / "clean")
    raw = tmp_path / "raw"  # raw sensor millimetres instead of normalised depth
    _write_clean_folder(raw, ["x"], depth=False)
    write_image(str(raw / "x_depth.png"), np.full((40, 48), 2000 / 65535.0), bit_depth=16)
    with pytest.raises(DatasetError, match="normalised"):
        find_clean_depth(raw)


def test_dataset_depth_from_middlebury_and_rgbd_fills_holes_and_inverts_disparity(tmp_path):
    import cv2

    mb = tmp_path / "mb"
    _write_clean_folder(mb, ["cones_image_02"], size=(30, 40), depth=False)
    disp = np.tile(np.linspace(200, 20, 40)[None], (30, 1)).astype(np.uint8)  # near on the left
    disp[10:15, 10:20] = 0  # unknown
    cv2.imwrite(str(mb / "cones_disp_02.png"), disp)
    rgbd = tmp_path / "rgbd"
    _write_clean_folder(rgbd / "color", ["00000"], size=(30, 40), depth=False)
    raw = np.tile(np.linspace(500, 3000, 30)[:, None], (1, 40)).astype(np.uint16)
    raw[:5, :5] = 0  # hole
    os.makedirs(rgbd / "depth")
    cv2.imwrite(str(rgbd / "depth" / "00000.png"), raw)
    pairs = clean_depth_pairs(tmp_path)  # finds both layouts one level down
    assert sorted(os.path.basename(p) for p, _ in pairs) == ["00000.png", "cones_image_02.png"]
    for _, load in pairs:
        d = load()
        assert d.shape == (30, 40) and 0 < d.min() and d.max() <= 1
    d_mb = dict((os.path.basename(p), f()) for p, f in pairs)["cones_image_02.png"]
    assert d_mb[:, 0].mean() < d_mb[:, -1].mean()  # depth = 1 / disparity
    assert 0 < d_mb[12, 15] < 1  # the hole is filled from its neighbours


# ----------------------------------------------------------------------------- config, experiment


def test_rehazy_configs_load():
    paper = load_config(os.path.join(REPO, "training/configs/rehazy_msdehazenet.yaml"))
    assert paper.trainer.name == "rehazy" and paper.model.name == "msdehazenet"
    assert (paper.data.batch_size, paper.data.crop_size, paper.optim.lr) == (2, 256, 2e-4)
    assert paper.rehazy.clean_only_steps == 300000
    assert paper.optim.epochs * paper.optim.steps_per_epoch == 400000
    assert (paper.rehazy.preset, paper.rehazy.w_depth, paper.rehazy.w_sem) == ("indoor", 0.01, 0.01)
    demo = load_config(os.path.join(REPO, "training/configs/rehazy_cpu_demo.yaml"))
    assert demo.data.val_scenes == ("1409",) and len(demo.rehazy.hazy) == 3
    assert TRAINERS["rehazy"] is RehazyTrainer


def test_experiment_run_end_to_end_with_rehazy(tmp_path):
    from keras_dehaze.experiment import run

    rng = np.random.default_rng(0)
    for scene in ("10", "11", "12"):  # RESIDE layout: clear images + depth recovered from the pairs
        clear = rng.uniform(0.05, 0.7, (24, 24, 3))
        write_image(str(tmp_path / "pairs" / "clear" / f"{scene}.png"), clear)
        write_image(str(tmp_path / "pairs" / "hazy" / f"{scene}_1.png"), 0.6 * clear + 0.35)
    _write_clean_folder(tmp_path / "real", ["r1", "r2"], size=(30, 30), depth=False)
    config = load_config(os.path.join(REPO, "training/configs/rehazy_cpu_demo.yaml"), overrides=[
        f"data.train={tmp_path / 'pairs'}", "data.val_scenes=[12]", "data.crop_size=16", "data.batch_size=2",
        f"rehazy.hazy=[{tmp_path / 'real'}]", "rehazy.clean_only_steps=1", "rehazy.semantic=none",
        "model.name=aecrnet", "model.args={filters: 4}", "optim.epochs=1", "optim.steps_per_epoch=2",
        f"run.out_dir={tmp_path / 'run'}", "run.verbose=0",
    ])
    summary = run(config)
    assert summary["steps"] == 2 and "val_psnr" in summary["after"]
    assert sorted(os.listdir(tmp_path / "run" / "depth_cache")) == ["10_depth.png", "11_depth.png"]  # not 12
    assert os.path.exists(tmp_path / "run" / "latest.keras")


MIRRORED_SCRIPT = """
import numpy as np
from keras_dehaze.backend import keras, tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_dehaze.depth import DCPPriorDepth
from keras_dehaze.models import AECRNet
from keras_dehaze.trainers import RehazyTrainer

rng = np.random.default_rng(0)
clean = rng.uniform(0, 1, (4, 16, 16, 3)).astype("float32")
depth = np.tile(np.linspace(0, 1, 16, dtype="float32")[None, :, None, None], (4, 1, 16, 1))
hazy = (0.5 * rng.uniform(0, 1, (4, 16, 16, 3)) + 0.4).astype("float32")
keras.utils.set_random_seed(1)
init = AECRNet(filters=4, global_residual=True).get_weights()

def run(strategy):
    with strategy.scope():  # fixed ranges: the same haze on every replica
        trainer = RehazyTrainer(AECRNet(filters=4, global_residual=True), depth_estimator=DCPPriorDepth(),
                                airlight=(0.8, 0.8), beta=(1.0, 1.0), delta_beta=(0.3, 0.3), clean_only_steps=1)
        trainer.dehazer.set_weights(init)
        trainer.compile(optimizer=keras.optimizers.SGD(0.5))
    ds = tf.data.Dataset.from_tensor_slices(((clean, depth), hazy)).batch(4).repeat()
    history = trainer.fit(ds, epochs=2, steps_per_epoch=1, verbose=0).history
    return trainer.dehazer.get_weights(), history

w1, h1 = run(tf.distribute.get_strategy())
w2, h2 = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
assert h1["cons"][0] == 0 and h1["cons"][1] > 0 and h2["cons"][1] > 0
diff = max(float(np.abs(a - b).max()) for a, b in zip(w1, w2))
assert diff < 1e-5, diff
print("OK", diff)
"""


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device_in_both_phases():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
