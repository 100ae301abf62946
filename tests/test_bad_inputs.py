"""The bad-input matrix: each row gives a clear error that names the problem (or works, where it
should), and nothing is lost or overwritten. Rows already covered elsewhere are referenced, not
repeated:

| row | covered by |
| --- | --- |
| truncated PNG/JPEG, zero-byte file, text file named .png: read_image | tests/data/test_image_io.py::test_error_truncated_png_and_jpeg, ::test_error_zero_byte, ::test_error_text_named_png, ::test_error_corrupt_png_body |
| the same files given to `keras-dehaze dehaze`: reported, skipped, the rest written | test_dehaze_cli_skips_broken_files_and_writes_the_rest (+ tests/cli/test_cli.py::test_one_bad_file_is_reported_and_skipped) |
| 16-bit PNG, grayscale, RGBA, CMYK JPEG: work (converted to RGB) | test_dehaze_cli_converts_16bit_gray_rgba_cmyk (+ tests/data/test_image_io.py::test_png_16bit_rgb_and_gray, ::test_gray_replicated, ::test_rgba_alpha_dropped_not_composited, ::test_jpeg_rgb_gray_and_cmyk) |
| a 1x1 image: works | test_one_pixel_image_keras_and_tflite |
| a 12000x9000 image: tiled, bounded memory (slow) | test_huge_image_tiled_with_bounded_memory[keras], [tflite_int8]; test_integer_output_rows_equal_the_float_path |
| hazy image without its GT; empty dataset folder | tests/data/test_pairing.py::test_missing_gt_is_an_error_listing_files, ::test_empty_and_missing_and_unknown (find_pairs); test_train_exits_2_on_dataset_errors (train.py / CLI: "error: ...", exit 2, no traceback) |
| config: unknown key, wrong type | tests/test_config.py::test_unknown_key_is_named, ::test_wrong_type_is_named; tests/training/test_train_script.py::test_bad_config_key_fails_before_training; test_unknown_model_or_bad_model_args_is_a_config_error |
| resuming a run dir whose backup is of another architecture | tests/training/test_fault_tolerance.py::test_backup_of_another_architecture_is_refused, ::test_backup_that_fits_only_partly_is_refused_not_silently_half_restored |
| a .keras of another architecture as `--model`: works | test_keras_file_of_another_architecture_works_as_model |
| pretrained weights (model.pretrained) of another architecture | test_pretrained_of_another_architecture_is_a_clear_error (+ tests/trainers/test_colabator.py::test_load_pretrained_weights_checks_file_and_architecture) |
| a corrupted checkpoint (.keras; training backup) | test_corrupt_and_missing_model_files; tests/training/test_fault_tolerance.py::test_corrupt_backup_is_a_clear_error_and_nothing_is_overwritten |
| a missing weights file | test_corrupt_and_missing_model_files (+ tests/cli/test_cli.py::test_model_errors_are_clear, ::test_bundled_weights_round_trip) |
| a .tflite with 2 inputs or 1 channel | test_tflite_with_unexpected_signature |
| an int8 .tflite the XNNPACK delegate refuses | test_int8_model_refused_by_xnnpack_runs_with_builtin_kernels |
| NaN in the loss | test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint, test_nan_weights_with_a_finite_loss_are_never_checkpointed |
| an output directory that cannot be created | test_output_dir_that_cannot_be_created (+ tests/data/test_image_io.py::test_write_errors) |
| a model file with untrusted content (Lambda layer) | test_lambda_layer_model_is_refused |
"""

import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from PIL import Image

from keras_dehaze.cli import main
from keras_dehaze.data import read_image, write_image
from tests import REPO as ROOT

TRAIN = os.path.join(ROOT, "training", "train.py")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny AE-CR-Net .keras and tiny .tflite files: a good int8 one (32x32) and two with
    unexpected signatures (two inputs; one channel)."""
    import tensorflow as tf

    from keras_dehaze.backend import keras
    from keras_dehaze.models import AECRNet

    out = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    AECRNet(filters=4, global_residual=True).save(str(out / "tiny.keras"))

    def conv_net(size, channels=3):
        x = keras.Input((size, size, channels), batch_size=1)
        y = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid")(x)
        return keras.Model(x, y)

    def save(name, model, int8=False, size=32):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if int8:
            rng = np.random.default_rng(0)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([rng.random((1, size, size, 3), np.float32)] for _ in range(4))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        (out / name).write_bytes(converter.convert())
        return str(out / name)

    a, b = keras.Input((32, 32, 3), batch_size=1), keras.Input((32, 32, 3), batch_size=1)
    paths = {
        "keras": str(out / "tiny.keras"),
        "int8": save("tiny_int8.tflite", conv_net(32), int8=True),
        "two_inputs": save("two_inputs.tflite", keras.Model([a, b], keras.layers.Add()([a, b]))),
        "one_channel": save("gray.tflite", conv_net(32, channels=1)),
    }
    return paths


def _photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    return (cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).round().astype(np.uint8)


def _no_traceback(text):
    assert "Traceback" not in text, text[-3000:]


# ----------------------------------------------------------------------------- image files
def test_dehaze_cli_skips_broken_files_and_writes_the_rest(tmp_path, models, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_photo(40, 48)).save(src / "good.png")
    Image.fromarray(_photo(40, 48, 1)).save(src / "full.jpg")
    for name, ext in (("good", ".png"), ("full", ".jpg")):
        data = (src / f"{name}{ext}").read_bytes()
        (src / f"cut{ext}").write_bytes(data[: len(data) // 2])
    (src / "empty.png").write_bytes(b"")
    (src / "notes.png").write_text("I am a text file\n")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    code = main(["dehaze", str(src), "-o", str(tmp_path / "out"), "--model", models["keras"], "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    for name, problem in (("cut.png", "truncated PNG"), ("cut.jpg", "truncated JPEG"), ("empty.png", "empty file"),
                          ("notes.png", "not an image file")):
        assert any(name in line and problem in line for line in err.splitlines()), (name, err)
    assert sorted(os.listdir(tmp_path / "out")) == ["full_dehazed.png", "good_dehazed.png"]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # inputs untouched


def test_dehaze_cli_converts_16bit_gray_rgba_cmyk(tmp_path, models):
    """They work, and the CLI's memory-saving path (stored depth in, 8-bit pixels out) writes the
    very same pixels as the float path (read_image -> dehazer -> write_image)."""
    from keras_dehaze.inference import load_dehazer

    src = tmp_path / "in"
    src.mkdir()
    rgb = _photo(36, 44)
    cv2.imwrite(str(src / "deep.png"), (rgb.astype(np.uint16) * 257 + 100)[:, :, ::-1])  # 16-bit
    Image.fromarray(rgb[:, :, 0]).save(src / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 90, np.uint8)]), "RGBA").save(src / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(src / "cmyk.jpg", quality=95)
    assert main(["dehaze", str(src), "-o", str(tmp_path / "out"), "--model", models["keras"], "--quiet"]) == 0
    dehazer = load_dehazer(models["keras"])
    for name in ("deep.png", "gray.png", "rgba.png", "cmyk.jpg"):
        out = cv2.imread(str(tmp_path / "out" / f"{os.path.splitext(name)[0]}_dehazed.png"), cv2.IMREAD_UNCHANGED)
        assert out.dtype == np.uint8 and out.shape == (36, 44, 3), name
        write_image(str(tmp_path / "ref.png"), dehazer(read_image(str(src / name))))
        np.testing.assert_array_equal(out, cv2.imread(str(tmp_path / "ref.png"), cv2.IMREAD_UNCHANGED), err_msg=name)


def test_one_pixel_image_keras_and_tflite(tmp_path, models):
    from keras_dehaze.edge.tflite_dehazer import TFLiteDehazer

    cv2.imwrite(str(tmp_path / "dot.png"), np.array([[[40, 120, 200]]], np.uint8))
    for key in ("keras", "int8"):
        out_dir = tmp_path / f"out_{key}"
        assert main(["dehaze", str(tmp_path / "dot.png"), "-o", str(out_dir), "--model", models[key], "--quiet"]) == 0
        assert read_image(str(out_dir / "dot_dehazed.png")).shape == (1, 1, 3)
    runner = TFLiteDehazer(models["int8"], threads=1)
    out = runner.dehaze(np.full((1, 1, 3), 0.5, np.float32))
    assert out.shape == (1, 1, 3) and runner.last_tiles == 1 and np.isfinite(out).all()


# ----------------------------------------------------------------------------- a 12000x9000 photo
HUGE_H, HUGE_W = 9000, 12000
MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np

    def hwm():  # peak resident set size of this process so far, bytes
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024

    kind, model, image, out = sys.argv[1:5]
    if kind == "keras":
        from keras_dehaze.cli import main
        from keras_dehaze.inference import load_dehazer
        load_dehazer(model)(np.zeros((1024, 1024, 3), np.uint8), dtype=np.uint8)  # runtime + one full tile
        base = hwm()
        start = time.time()
        code = main(["dehaze", image, "-o", out, "--model", model, "--quiet"])
    else:  # the TensorFlow-free runner, as on a device
        for name in ("tensorflow", "tf_keras", "keras"):
            sys.modules[name] = None
        from keras_dehaze.edge import runner
        from keras_dehaze.edge.tflite_dehazer import TFLiteDehazer
        TFLiteDehazer(model, threads=1).dehaze(np.zeros((256, 256, 3), np.uint8))
        base = hwm()
        start = time.time()
        code = runner.main([image, "--model", model, "-o", out, "--threads", "1", "--quiet"])
    print("RESULT", code, base, hwm(), round(time.time() - start, 1), flush=True)
    """
)


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    rng = np.random.default_rng(0)
    small = rng.random((HUGE_H // 64 + 2, HUGE_W // 64 + 2, 3)).astype(np.float32)
    image = (cv2.resize(small, (HUGE_W, HUGE_H), interpolation=cv2.INTER_LINEAR) * 255).astype(np.uint8)
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return str(path)


@pytest.fixture(scope="module")
def int8_256(tmp_path_factory):
    """A tiny int8 .tflite with a 256x256 input (conv 3x3 x2), tiled over the photo."""
    import tensorflow as tf

    from keras_dehaze.backend import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((256, 256, 3), batch_size=1)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid")(y)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(x, y))
    rng = np.random.default_rng(0)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.random((1, 256, 256, 3), np.float32)] for _ in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("int8") / "tiny_int8_256.tflite"
    path.write_bytes(converter.convert())
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["keras", "tflite_int8"])
def test_huge_image_tiled_with_bounded_memory(kind, huge_png, int8_256, models, tmp_path):
    """12000x9000 photo, tiny models (AE-CR-Net filters=4 .keras with 1024 tiles; a 2-conv int8
    .tflite with 256 tiles): peak RSS (VmHWM) measured in a subprocess, above the high-water mark
    of the same process after loading the runtime and running one full tile.

    Bound: 4 x H x W x 3 bytes (1.3 GB) + one row of tiles in float32 (tile x W x 3 x 4) + 64 MB.
    The full-size arrays that remain are 8-bit: the decoded photo (324 MB, scaled to float per
    tile), the 8-bit output written row band by row band (324 MB), then the BGR copy the PNG
    encoder needs and the encoded bytes (each <= 324 MB; the photo is freed before the write).
    A single full-size float32 array (1.3 GB; what the CLI used to hold several of: float input,
    float output, clipped and scaled copies, peak 5.9 GB) would break the bound.
    """
    model = models["keras"] if kind == "keras" else int8_256
    tile = 1024 if kind == "keras" else 256
    script = tmp_path / "measure.py"
    script.write_text(MEMORY_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), kind.split("_")[0], model, huge_png, str(tmp_path / "out")],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    _, code, base, peak, seconds = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT")).split()
    base, peak = int(base), int(peak)
    bound = 4 * HUGE_H * HUGE_W * 3 + tile * HUGE_W * 3 * 4 + 64 * 2**20
    print(f"{kind}: 12000x9000 in {seconds} s; peak RSS {peak / 2**30:.2f} GiB = runtime+tile "
          f"{base / 2**30:.2f} GiB + images {(peak - base) / 2**30:.2f} GiB (bound {bound / 2**30:.2f} GiB)")
    assert code == "0"
    assert peak - base < bound
    out = cv2.imread(str(tmp_path / "out" / "huge_dehazed.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (HUGE_H, HUGE_W, 3) and out.dtype == np.uint8


def test_integer_output_rows_equal_the_float_path():
    """What keeps the 12000x9000 case small: tiles blended into one row band and written as 8/16-bit
    pixels give exactly round(clip(float result) * 255), for any tile geometry."""
    from keras_dehaze import tiling
    from keras_dehaze.inference import KerasDehazer
    from keras_dehaze.models import AECRNet

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (301, 517, 3), dtype=np.uint8)

    def run(batch):  # nonlinear, position-dependent, partly out of [0, 1]
        return np.tanh(3 * batch - 1.2) * 1.1 + 0.05 * np.roll(batch, 3, axis=2)

    for tile, overlap, multiple in ((64, 16, 4), (96, 40, 8), (600, 32, 4)):
        ref = np.clip(tiling.dehaze_tiled(image, run, tile, overlap, multiple), 0, 1)
        for dtype, scale in ((np.uint8, 255.0), (np.uint16, 65535.0)):
            out = tiling.dehaze_tiled(image, run, tile, overlap, multiple, out_dtype=dtype)
            assert out.dtype == dtype
            np.testing.assert_array_equal(out, np.round(ref * np.float32(scale)).astype(dtype))
    small = image[:70, :90]  # a tiny AE-CR-Net, tiled with small tiles
    dehazer = KerasDehazer(AECRNet(filters=4, global_residual=True), tile=48, overlap=16)
    np.testing.assert_array_equal(dehazer(small, dtype=np.uint8),
                                  np.round(dehazer(small) * np.float32(255)).astype(np.uint8))


def test_int8_model_refused_by_xnnpack_runs_with_builtin_kernels(tmp_path, capsys):
    """A full-integer AE-CR-Net export that the XNNPACK delegate refuses (node 227 fails to
    prepare) used to be "cannot load the TFLite model"; the runner now falls back to the builtin
    kernels with a warning (keras_dehaze.edge.interpreter.TFLiteModel does it for every caller)."""
    from keras_dehaze.backend import keras
    from keras_dehaze.edge.export import convert
    from keras_dehaze.edge.quantization import rebuild_fixed
    from keras_dehaze.edge.tflite_dehazer import TFLiteDehazer
    from keras_dehaze.models import AECRNet

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    fixed = rebuild_fixed(AECRNet(filters=4, global_residual=True), 32, 32, index_math="int")
    blob = convert(fixed, "int8", representative=lambda: ([rng.random((1, 32, 32, 3), np.float32)] for _ in range(4)))
    (tmp_path / "aecrnet_int8.tflite").write_bytes(blob)
    runner = TFLiteDehazer(str(tmp_path / "aecrnet_int8.tflite"), threads=1)
    if runner.xnnpack_error is None:
        pytest.skip("this LiteRT build's XNNPACK accepts the model: nothing to fall back from")
    assert "XNNPACK delegate refused" in capsys.readouterr().err
    out = runner.dehaze(np.full((40, 50, 3), 0.5, np.float32))
    assert out.shape == (40, 50, 3) and np.isfinite(out).all()


# ----------------------------------------------------------------------------- datasets and configs
def _pairs(root, n=3, missing_gt=()):
    for i in range(n):
        clear = np.random.default_rng(i).uniform(0, 1, (20, 20, 3))
        write_image(str(root / "hazy" / f"{i}.png"), 0.6 * clear + 0.36)
        if i not in missing_gt:
            write_image(str(root / "GT" / f"{i}.png"), clear)
    return str(root)


def _train_args(data, out, *extra):
    return ["train", "--set", f"data.train={data}", "--set", f"run.out_dir={out}", "--set", "model.args.filters=4",
            "--set", "data.crop_size=16", "--set", "data.batch_size=2", "--set", "optim.epochs=1",
            "--set", "optim.steps_per_epoch=2", "--set", "trainer.cr_weight=0", "--set", "run.tensorboard=false",
            "--set", "run.verbose=0", *extra]


def test_train_exits_2_on_dataset_errors(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("an earlier run's config\n")
    # a hazy image without its GT (in-process: the CLI's code path)
    data = _pairs(tmp_path / "incomplete", missing_gt=(1,))
    assert main(_train_args(data, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "1.png" in err and "no ground truth" in err, err
    _no_traceback(err)
    # an empty dataset folder, through training/train.py in a subprocess (exit code, no traceback)
    (tmp_path / "empty" / "hazy").mkdir(parents=True)
    (tmp_path / "empty" / "GT").mkdir()
    proc = subprocess.run([sys.executable, TRAIN, *_train_args(str(tmp_path / "empty"), out)[1:]],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "contains no images" in proc.stderr
    _no_traceback(proc.stderr)
    assert (out / "config.yaml").read_text() == "an earlier run's config\n"  # nothing overwritten
    assert sorted(os.listdir(out)) == ["config.yaml"]


def test_unknown_model_or_bad_model_args_is_a_config_error(tmp_path, capsys):
    data = _pairs(tmp_path / "data")
    assert main(_train_args(data, tmp_path / "run", "--set", "model.name=nonet")) == 2
    err = capsys.readouterr().err
    assert "model.name 'nonet'" in err and "known models" in err, err
    assert main(_train_args(data, tmp_path / "run", "--set", "model.args.filterz=4")) == 2
    err = capsys.readouterr().err
    assert "filterz" in err and err.startswith("error: "), err


# ----------------------------------------------------------------------------- checkpoints and model files
def test_keras_file_of_another_architecture_works_as_model(tmp_path):
    from keras_dehaze.models import MSDehazeNet

    path = str(tmp_path / "other.keras")
    MSDehazeNet(widths=(4, 8, 16), num_blocks=(1, 1, 1, 1, 1), heads=1).save(path)  # .keras carries its architecture
    write_image(str(tmp_path / "a.png"), np.random.default_rng(0).uniform(0, 1, (24, 40, 3)))
    assert main(["dehaze", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", path, "--quiet"]) == 0
    assert read_image(str(tmp_path / "out" / "a_dehazed.png")).shape == (24, 40, 3)


def test_pretrained_of_another_architecture_is_a_clear_error(tmp_path, models, capsys):
    data = _pairs(tmp_path / "data")
    assert main(_train_args(data, tmp_path / "run", "--set", "model.args.filters=8",
                            "--set", f"model.pretrained={models['keras']}")) == 2
    err = capsys.readouterr().err
    assert "does not match the configured model" in err and "model.args" in err, err
    _no_traceback(err)


def test_corrupt_and_missing_model_files(tmp_path, models, capsys):
    good = open(models["keras"], "rb").read()
    (tmp_path / "cut.keras").write_bytes(good[: len(good) // 2])  # a checkpoint cut by a kill or a full disk
    write_image(str(tmp_path / "a.png"), np.full((8, 8, 3), 0.5))
    cases = [(str(tmp_path / "cut.keras"), "not a loadable keras-dehaze model"),
             (str(tmp_path / "missing.keras"), "model file not found"),
             (str(tmp_path / "missing.tflite"), "model file not found")]
    for model, message in cases:
        assert main(["dehaze", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", model]) == 2
        err = capsys.readouterr().err
        assert message in err and os.path.basename(model) in err, err
    assert not os.path.exists(tmp_path / "out")  # nothing written: the folder is created only once the model loaded
    data = _pairs(tmp_path / "data")
    for model, message in ((str(tmp_path / "cut.keras"), "cannot load pretrained checkpoint"),
                           (str(tmp_path / "missing.keras"), "pretrained checkpoint not found")):
        assert main(_train_args(data, tmp_path / "run", "--set", f"model.pretrained={model}")) == 2
        err = capsys.readouterr().err
        assert message in err, err
        _no_traceback(err)


def test_tflite_with_unexpected_signature(tmp_path, models, capsys):
    from keras_dehaze.edge.tflite_dehazer import TFLiteDehazer

    with pytest.raises(ValueError, match="one image input.*2 inputs"):
        TFLiteDehazer(models["two_inputs"])
    with pytest.raises(ValueError, match=r"expected an input of shape \[1, H, W, 3\] \(RGB\), got \[1, 32, 32, 1\]"):
        TFLiteDehazer(models["one_channel"])
    write_image(str(tmp_path / "a.png"), np.full((8, 8, 3), 0.5))
    for key, message in (("two_inputs", "2 inputs"), ("one_channel", "[1, 32, 32, 1]")):
        assert main(["dehaze", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", models[key]]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and os.path.basename(models[key]) in err, err


def test_lambda_layer_model_is_refused(tmp_path, capsys):
    """safe_mode: a .keras with a Lambda layer (arbitrary Python code) is never deserialised."""
    from keras_dehaze.backend import keras

    x = keras.Input((None, None, 3))
    path = str(tmp_path / "lambda.keras")
    keras.Model(x, keras.layers.Lambda(lambda t: 1.0 - t)(x)).save(path)
    write_image(str(tmp_path / "a.png"), np.full((8, 8, 3), 0.5))
    assert main(["dehaze", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", path]) == 2
    err = capsys.readouterr().err
    assert "lambda.keras" in err and "Lambda" in err and "safe_mode" in err, err
    assert not os.path.exists(tmp_path / "out")  # nothing written, not even the output folder
    data = _pairs(tmp_path / "data")
    assert main(_train_args(data, tmp_path / "run", "--set", f"model.pretrained={path}")) == 2
    err = capsys.readouterr().err
    assert "Lambda" in err and "safe_mode" in err, err


# ----------------------------------------------------------------------------- NaN
class NaNAtStep:
    """A PairedTrainer whose loss is multiplied by NaN from optimizer step `nan_step` on (or
    only whose gradients are, with a finite logged loss: `finite_loss=True`)."""

    @staticmethod
    def make(nan_step, finite_loss=False):
        from keras_dehaze.backend import tf
        from keras_dehaze.trainers import PairedTrainer
        from keras_dehaze.trainers.common import average

        class Trainer(PairedTrainer):
            def train_step(self, data):
                hazy, clear = data
                bad = self.optimizer.iterations >= nan_step
                poison = tf.where(bad, float("nan"), 1.0)
                with tf.GradientTape() as tape:
                    l1, _, _ = self.per_example_losses(hazy, clear, training=True)
                    loss = average(l1) * (1.0 if finite_loss else poison)
                grads = tape.gradient(loss, self.dehazer.trainable_variables)
                if finite_loss:
                    grads = [g * poison for g in grads]
                self.optimizer.apply_gradients(zip(grads, self.dehazer.trainable_variables))
                self.loss_tracker.update_state(l1 * (1.0 if finite_loss else poison))
                return {"loss": self.loss_tracker.result()}

        return Trainer


def _nan_run(tmp_path, monkeypatch, nan_step, finite_loss):
    from keras_dehaze import trainers

    monkeypatch.setitem(trainers.TRAINERS, "nan_test", NaNAtStep.make(nan_step, finite_loss))
    data = _pairs(tmp_path / "data", n=4)
    out = tmp_path / "run"
    args = _train_args(data, out, "--set", "trainer.name=nan_test", "--set", "optim.epochs=3",
                       "--set", "optim.steps_per_epoch=3", "--set", "run.backup_every_steps=2")
    return main(args), str(out)


def _weights_finite_and_equal_to_backup(out, backup_step):
    """latest.keras loads with finite weights equal to the backup's, which is at `backup_step`."""
    from keras_dehaze.backend import tf
    from keras_dehaze.callbacks import validate_backup
    from keras_dehaze.config import load_config
    from keras_dehaze.experiment import make_optimizer
    from keras_dehaze.inference import load_keras_model
    from keras_dehaze.models import build_model
    from keras_dehaze.trainers import PairedTrainer

    latest = load_keras_model(os.path.join(out, "latest.keras")).get_weights()
    assert all(np.isfinite(w).all() for w in latest)
    config = load_config(os.path.join(out, "config.yaml"))
    trainer = PairedTrainer(build_model(config.model.name, **config.model.args), None)
    trainer.compile(optimizer=make_optimizer(config.optim, 9))
    trainer(tf.zeros([1, 16, 16, 3]))
    prefix = validate_backup(trainer, os.path.join(out, "backup"))
    step = int(tf.train.load_checkpoint(prefix).get_tensor("model/optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))
    assert step == backup_step
    assert all(np.isfinite(w).all() for w in trainer.dehazer.get_weights())
    return latest, trainer.dehazer.get_weights()


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    # 3 epochs x 3 steps, backups every 2 steps; the 8th step (epoch 3, batch 2) gives a NaN loss
    code, out = _nan_run(tmp_path, monkeypatch, nan_step=7, finite_loss=False)
    err = capsys.readouterr().err
    assert code == 1
    assert "loss became nan at optimizer step 8 (epoch 3, batch 2)" in err and "last good checkpoint" in err, err
    _no_traceback(err)
    latest, backup = _weights_finite_and_equal_to_backup(out, backup_step=6)  # not the step-8 weights
    for a, b in zip(latest, backup):  # latest.keras is epoch 2's end = the step-6 backup
        np.testing.assert_array_equal(a, b)


def test_nan_weights_with_a_finite_loss_are_never_checkpointed(tmp_path, monkeypatch, capsys):
    # the 6th step (epoch 2's last) applies NaN gradients, its logged loss is still finite: the
    # epoch-end checkpoint refuses the weights; the step-6 backup is not written either
    code, out = _nan_run(tmp_path, monkeypatch, nan_step=5, finite_loss=True)
    err = capsys.readouterr().err
    assert code == 1 and "weights became NaN/inf by optimizer step 6 (epoch 2)" in err, err
    _weights_finite_and_equal_to_backup(out, backup_step=4)
    assert [line.split(",")[0] for line in open(os.path.join(out, "log.csv"))][1:] == ["0"]


# ----------------------------------------------------------------------------- output directory
def test_output_dir_that_cannot_be_created(tmp_path, models, capsys):
    """Tests run as root, for whom chmod does not stop writes: the folder is placed under a regular
    FILE, so it cannot be created at all."""
    (tmp_path / "somefile.txt").write_text("keep me\n")
    blocked = str(tmp_path / "somefile.txt" / "sub")
    write_image(str(tmp_path / "a.png"), np.full((8, 8, 3), 0.5))
    assert main(["dehaze", str(tmp_path / "a.png"), "-o", blocked, "--model", models["keras"]]) == 2
    err = capsys.readouterr().err
    assert "cannot create the output folder" in err and "somefile.txt" in err and "Not a directory" in err, err
    data = _pairs(tmp_path / "data")
    assert main(_train_args(data, blocked)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run.out_dir") and "cannot be created" in err, err
    from keras_dehaze.edge import runner as edge_runner

    assert edge_runner.main([str(tmp_path / "a.png"), "--model", models["int8"], "-o", blocked]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    assert (tmp_path / "somefile.txt").read_text() == "keep me\n"
