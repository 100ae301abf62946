"""Behaviour of the command line tools as a user meets it: quiet TensorFlow, no TensorFlow where
none is needed, progress within an image, Ctrl-C, --overwrite, --bit-depth, one message per
problem, model names, load-time model checks, train config checks, eval grid and warnings,
edge/convert.py and edge/benchmark.py options. Every test makes its own small data."""

import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from keras_dehaze import pretrained
from keras_dehaze.cli import build_parser, main
from keras_dehaze.data import read_image, write_image
from tests import REPO as ROOT

BUNDLED_TFLITE = os.path.join(ROOT, "keras_dehaze", "weights", "aecrnet_default_int8.tflite")
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _photo(path, size=(40, 52), seed=0, depth=8):
    rng = np.random.default_rng(seed)
    clear = rng.uniform(0, 1, (*size, 3))
    hazy = 0.6 * clear + 0.35
    if depth == 16:
        cv2.imwrite(str(path), np.round(hazy * 65535).astype(np.uint16)[:, :, ::-1])
    else:
        write_image(str(path), hazy)
    return clear


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "keras_dehaze.cli", *args], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    from keras_dehaze.models import AECRNet

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    AECRNet(filters=4, global_residual=True).save(str(path))
    return str(path)


# ----------------------------------------------------------------------------- TensorFlow: quiet, or not loaded
NO_TF_SCRIPT = textwrap.dedent(
    """
    import runpy, sys
    from keras_dehaze.cli import main

    def run(argv):
        try:
            return main(argv)
        except SystemExit as e:
            return e.code

    image, out, tflite, root = sys.argv[1:5]
    codes = [run(["--help"]), run(["dehaze", "--help"]), run(["eval", "--help"]), run(["train", "--help"]),
             run(["dehaze", image, "-o", out + "/dcp", "--model", "dcp", "--quiet"]),
             run(["dehaze", image, "-o", out + "/id", "--model", "identity", "--quiet"]),
             run(["dehaze", image, "-o", out + "/tfl", "--model", tflite, "--quiet"]),
             run(["dehaze", image, "-o", out + "/x", "--model", "nonet", "--quiet"])]
    for script in ("convert.py", "benchmark.py"):
        sys.argv = [script, "--help"]
        try:
            runpy.run_path(root + "/edge/" + script, run_name="__main__")
        except SystemExit as e:
            codes.append(e.code)
    print("CODES", codes)
    print("TENSORFLOW", "tensorflow" in sys.modules, "tf_keras" in sys.modules)
    """
)


def test_help_tflite_dcp_identity_and_edge_help_never_import_tensorflow(tmp_path):
    _photo(tmp_path / "a.png", size=(300, 280))  # larger than the bundled .tflite's 256x256 tile
    script = tmp_path / "no_tf.py"
    script.write_text(NO_TF_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "a.png"), str(tmp_path / "out"),
                           BUNDLED_TFLITE, ROOT], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CODES [0, 0, 0, 0, 0, 0, 0, 2, 0, 0]" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert "TENSORFLOW False False" in proc.stdout, proc.stdout
    for sub in ("dcp", "id", "tfl"):
        assert read_image(str(tmp_path / "out" / sub / "a_dehazed.png")).shape == (300, 280, 3)
    assert not os.path.exists(tmp_path / "out" / "x")


def test_tensorflow_messages_are_hidden_unless_verbose(tmp_path, tiny_keras):
    _photo(tmp_path / "a.png")
    proc = _cli("dehaze", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", tiny_keras, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # no oneDNN / cuda / cuInit / absl lines
    proc = _cli("--verbose", "dehaze", str(tmp_path / "a.png"), "-o", str(tmp_path / "out2"), "--model", tiny_keras,
                "--quiet")
    assert proc.returncode == 0, proc.stderr
    # --verbose is accepted before or after the subcommand
    assert build_parser().parse_args(["dehaze", "x.png", "--verbose"]).verbose
    assert build_parser().parse_args(["--verbose", "dehaze", "x.png"]).verbose


# ----------------------------------------------------------------------------- progress within an image
def test_progress_callbacks_count_tiles_and_strips(tiny_keras):
    from keras_dehaze import tiling
    from keras_dehaze.inference import DCPDehazer, KerasDehazer, load_dehazer

    image = np.random.default_rng(0).integers(0, 255, (100, 140, 3), dtype=np.uint8)
    calls = []
    keras_dehazer = KerasDehazer(load_dehazer(tiny_keras).model, tile=64)
    out = keras_dehazer(image, dtype=np.uint8, progress=lambda done, total: calls.append((done, total)))
    n = tiling.count_tiles((100, 140), 64, 32, 4)
    assert n > 1 and calls == [(i, n) for i in range(1, n + 1)] and out.shape == image.shape
    calls.clear()
    DCPDehazer(strip_pixels=3000)(image, dtype=np.uint8, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) > 1 and calls[-1][0] == calls[-1][1] == len(calls)
    calls.clear()
    tflite = load_dehazer(BUNDLED_TFLITE, threads=1)
    tflite(np.zeros((300, 280, 3), np.uint8), dtype=np.uint8, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_progress_bar_moves_within_one_image(tmp_path, tiny_keras):
    _photo(tmp_path / "big.png", size=(100, 140))
    proc = _cli("dehaze", str(tmp_path / "big.png"), "-o", str(tmp_path / "out"), "--model", tiny_keras,
                "--tile", "64")
    assert proc.returncode == 0, proc.stderr
    assert "part 1/" in proc.stderr and "0.17/1 images" in proc.stderr, proc.stderr  # 1 of 6 tiles


def test_dcp_strips_match_the_whole_image():
    from keras_dehaze.physics.dcp import dehaze_dcp, dehaze_dcp_strips

    rng = np.random.default_rng(0)
    image = cv2.resize(rng.random((20, 16, 3)).astype(np.float32), (160, 300), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image * 0.6 + 0.3, 0, 1)
    whole = dehaze_dcp(image)[0]
    strips = dehaze_dcp_strips(image, strip_pixels=160 * 40)  # many strips with overlapping margins
    assert np.abs(whole - strips).max() < 1e-4
    photo = (image * 255).round().astype(np.uint8)  # 8-bit in, 8-bit out, scaled strip by strip
    pixels = dehaze_dcp_strips(photo, strip_pixels=160 * 40, out_dtype=np.uint8)
    reference = np.round(dehaze_dcp(photo.astype(np.float32) / 255)[0] * 255)
    assert pixels.dtype == np.uint8 and np.abs(pixels.astype(int) - reference).max() <= 1


# ----------------------------------------------------------------------------- Ctrl-C, overwrite, messages
class _Interrupting:
    name = "interrupting"

    def __init__(self):
        self.calls = 0

    def __call__(self, image, dtype=np.float32, progress=None):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return np.zeros(image.shape, dtype)


def test_ctrl_c_exits_130_with_one_line_and_no_partial_file(tmp_path, monkeypatch, capsys):
    from keras_dehaze import inference
    from keras_dehaze.data import image_io

    for name in ("a", "b", "c"):
        _photo(tmp_path / "in" / f"{name}.png", seed=ord(name))
    monkeypatch.setattr(inference, "load_dehazer", lambda *a, **k: _Interrupting())
    assert main(["dehaze", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err
    assert sorted(os.listdir(tmp_path / "out")) == ["a_dehazed.png"]

    def interrupted_rename(src, dst):  # Ctrl-C between writing the temporary file and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "load_dehazer", lambda *a, **k: inference.IdentityDehazer())
    monkeypatch.setattr(image_io.os, "replace", interrupted_rename)
    assert main(["dehaze", str(tmp_path / "in" / "a.png"), "-o", str(tmp_path / "out2"), "--quiet"]) == 130
    assert os.listdir(tmp_path / "out2") == []  # neither the image nor its temporary file


def test_ctrl_c_in_a_real_process(tmp_path):
    """A real SIGINT: exit status 130, one line, no traceback."""
    _photo(tmp_path / "a.png")
    script = tmp_path / "sigint.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys
        # A terminal delivers SIGINT; a parent that ignores it (as the test runner may, after
        # other tests) would make this child inherit SIG_IGN.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import numpy as np
        from keras_dehaze import inference
        from keras_dehaze.cli import console_main

        class Slow:
            name = "slow"
            def __call__(self, image, dtype=np.float32, progress=None):
                os.kill(os.getpid(), signal.SIGINT)
                return np.zeros(image.shape, dtype)

        inference.load_dehazer = lambda *a, **k: Slow()
        sys.argv = ["keras-dehaze", "dehaze", sys.argv[1], "-o", sys.argv[2], "--quiet"]
        console_main()
    """))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "a.png"), str(tmp_path / "out")],
                          capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "interrupted" in proc.stderr
    assert not os.listdir(tmp_path / "out")


def test_existing_outputs_are_refused_per_file_unless_overwrite(tmp_path, capsys):
    for name in ("a", "b"):
        _photo(tmp_path / "in" / f"{name}.png", seed=ord(name))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a_dehazed.png").write_bytes(b"keep me")
    args = ["dehaze", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "identity", "--quiet"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert (tmp_path / "out" / "a_dehazed.png").read_bytes() == b"keep me"
    assert os.path.exists(tmp_path / "out" / "b_dehazed.png")  # the others are still written
    lines = [line for line in captured.err.splitlines() if "a_dehazed.png" in line]
    assert len(lines) == 1 and "already exists" in lines[0] and "--overwrite" in lines[0], captured.err
    assert "not overwritten" in captured.out
    assert main(args + ["--overwrite"]) == 0
    assert read_image(str(tmp_path / "out" / "a_dehazed.png")).shape == (40, 52, 3)


def test_each_problem_names_the_file_once(tmp_path, capsys):
    _photo(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "notes.png").write_text("not an image")
    assert main(["dehaze", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "dcp", "--quiet"]) == 1
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "notes.png" in line)
    assert line.count("notes.png") == 1 and "not an image file" in line, err


def test_bit_depth_option(tmp_path):
    _photo(tmp_path / "deep.png", depth=16)
    _photo(tmp_path / "flat.png")
    for choice, expected in (("8", {"deep": np.uint8, "flat": np.uint8}),
                             ("16", {"deep": np.uint16, "flat": np.uint16}),
                             ("auto", {"deep": np.uint16, "flat": np.uint8})):
        out = tmp_path / f"out_{choice}"
        assert main(["dehaze", str(tmp_path / "deep.png"), str(tmp_path / "flat.png"), "-o", str(out),
                     "--model", "identity", "--bit-depth", choice, "--quiet"]) == 0
        for name, dtype in expected.items():
            assert cv2.imread(str(out / f"{name}_dehazed.png"), cv2.IMREAD_UNCHANGED).dtype == dtype, (choice, name)
    source = cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_UNCHANGED)
    kept = cv2.imread(str(tmp_path / "out_auto" / "deep_dehazed.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(source, kept)  # identity at 16 bits keeps every value
    assert main(["dehaze", str(tmp_path / "flat.png"), "-o", str(tmp_path / "x"), "--model", "identity",
                 "--bit-depth", "8", "--quiet"]) == 0  # and colours are not swapped by the encoder shortcut
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "x" / "flat_dehazed.png")),
                                  cv2.imread(str(tmp_path / "flat.png")))


# ----------------------------------------------------------------------------- models
def test_model_names_are_listed_the_same_way_everywhere(capsys):
    from keras_dehaze.inference import ModelLoadError, load_dehazer, model_names, model_names_text, resolve_name

    text = model_names_text()
    assert model_names() == pretrained.available() + ["identity", "dcp"]
    assert all(name in text for name in model_names()) and "'aecrnet'" in text
    assert resolve_name("aecrnet") == pretrained.AECRNET
    with pytest.raises(ModelLoadError) as error:
        load_dehazer("aecrnet_defualt")
    assert text in str(error.value)
    with pytest.raises(SystemExit):
        main(["dehaze", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert " ".join(text.split()) in help_text


def test_corrupt_keras_file_is_named_as_such(tmp_path, capsys):
    _photo(tmp_path / "a.png")
    (tmp_path / "broken.keras").write_bytes(b"\x00" * 100)
    assert main(["dehaze", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model",
                 str(tmp_path / "broken.keras")]) == 2
    err = capsys.readouterr().err
    assert "not a valid Keras archive" in err and "signature" not in err and err.count("broken.keras") == 1, err
    assert not os.path.exists(tmp_path / "out")  # the output folder is created only once the model loaded


def test_tflite_of_another_size_is_refused_at_load(tmp_path, capsys):
    import tensorflow as tf

    from keras_dehaze.backend import keras

    x = keras.Input((32, 32, 3), batch_size=1)
    y = keras.layers.Conv2D(3, 3, strides=2, padding="same")(x)  # 16x16 out of a 32x32 input
    path = tmp_path / "half.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(x, y)).convert())
    _photo(tmp_path / "a.png")
    assert main(["dehaze", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert "16x16 pixels for a 32x32 input" in err and "run_fn" not in err, err
    assert not os.path.exists(tmp_path / "out")


# ----------------------------------------------------------------------------- train
def _pairs(root, n=2):
    for i in range(n):
        clear = np.random.default_rng(i).uniform(0, 1, (20, 20, 3))
        write_image(str(root / "hazy" / f"{i}.png"), 0.6 * clear + 0.36)
        write_image(str(root / "GT" / f"{i}.png"), clear)
    return str(root)


def test_train_needs_a_config_and_existing_data_before_creating_anything(tmp_path, capsys):
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train needs --config") and "nothing was trained" in err, err
    out = tmp_path / "run"
    assert main(["train", "--set", f"data.train={tmp_path / 'nowhere'}", "--set", f"run.out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "data.train" in err and "nowhere" in err and "not found" in err, err
    assert not os.path.exists(out)
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  train: [{tmp_path / 'nowhere'}]\nrun:\n  out_dir: {out}\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "not found" in capsys.readouterr().err and not os.path.exists(out)


def test_corun_pretrain_with_another_model_gives_the_real_reason(tmp_path, capsys):
    data = _pairs(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["train", "--set", "trainer.name=corun_pretrain", "--set", "model.name=msdehazenet",
                 "--set", f"data.train={data}", "--set", f"run.out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "corun_pretrain needs CORUN's transmission output" in err and "corun/corun_compact" in err, err
    assert "return_transmission" not in err and not os.path.exists(out)


# ----------------------------------------------------------------------------- eval
def test_eval_grid_shows_the_input_once_without_gaps(tmp_path, capsys):
    for i, size in enumerate([(48, 64), (64, 40)]):  # landscape and portrait rows
        clear = _photo(tmp_path / "data" / "hazy" / f"{i}.png", size=size, seed=i)
        write_image(str(tmp_path / "data" / "GT" / f"{i}.png"), clear)
    assert main(["eval", str(tmp_path / "data"), "--model", "dcp", "-o", str(tmp_path / "res"), "--quiet"]) == 0
    grid = cv2.imread(str(tmp_path / "res" / "data_examples.png"))
    # panels hazy | dcp | GT (the identity baseline is the hazy input: not shown twice)
    assert grid.shape[1] == 3 * round(64 * 180 / 48)
    white = (grid >= 250).all(axis=2)
    assert not white.all(axis=1).any() and not white.all(axis=0).any()  # no white gap rows or columns


def test_eval_warns_about_scenes_a_bundled_model_was_trained_on(tmp_path, monkeypatch, capsys):
    from keras_dehaze.models import AECRNet

    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(tmp_path / "weights"))
    record = {"trained_on": [str(tmp_path / "elsewhere" / "mydata")], "validation_scenes_held_out": ["1"]}
    pretrained.export_pretrained(AECRNet(filters=4), "tiny", "aecrnet", {"filters": 4}, record)
    pretrained.export_pretrained(AECRNet(filters=4), "norecord", "aecrnet", {"filters": 4}, {})
    for i in range(3):
        clear = _photo(tmp_path / "mydata" / "hazy" / f"{i}.png", size=(24, 24), seed=i)
        write_image(str(tmp_path / "mydata" / "GT" / f"{i}.png"), clear)
    assert main(["eval", str(tmp_path / "mydata"), "--model", "tiny", "--model", "norecord",
                 "-o", str(tmp_path / "res"), "--quiet", "--examples", "0"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert "tiny" in warnings[0] and "(0, 2)" in warnings[0] and "2 of the 3 scenes" in warnings[0]
    assert main(["eval", str(tmp_path / "mydata"), "--model", "tiny", "--scenes", "1", "-o", str(tmp_path / "res2"),
                 "--quiet", "--examples", "0"]) == 0
    assert "warning:" not in capsys.readouterr().err  # only held-out scenes scored


def test_eval_counts_only_the_recorded_trained_scenes(tmp_path, monkeypatch, capsys):
    """A folder that gained scenes after training: only the record's trained_scenes warn."""
    from keras_dehaze.models import AECRNet

    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(tmp_path / "weights"))
    folder = str(tmp_path / "mydata")
    record = {"trained_on": [folder], "validation_scenes_held_out": ["1"], "trained_scenes": {folder: ["0"]}}
    pretrained.export_pretrained(AECRNet(filters=4), "tiny", "aecrnet", {"filters": 4}, record)
    for i in range(4):
        clear = _photo(tmp_path / "mydata" / "hazy" / f"{i}.png", size=(24, 24), seed=i)
        write_image(str(tmp_path / "mydata" / "GT" / f"{i}.png"), clear)
    assert main(["eval", folder, "--model", "tiny", "-o", str(tmp_path / "res"), "--quiet", "--examples", "0"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "1 of the 4 scenes" in warnings[0] and "(0)" in warnings[0], warnings
    assert main(["eval", folder, "--model", "tiny", "--scenes", "2,3", "-o", str(tmp_path / "res2"),
                 "--quiet", "--examples", "0"]) == 0
    assert "warning:" not in capsys.readouterr().err  # scenes added after training


def test_eval_keeps_only_thumbnails_of_the_examples(tmp_path):
    from keras_dehaze.data import find_pairs
    from keras_dehaze.evaluation import evaluate_pairs
    from keras_dehaze.inference import DCPDehazer, IdentityDehazer

    for i in range(3):
        clear = _photo(tmp_path / "d" / "hazy" / f"{i}.png", size=(400, 500), seed=i)
        write_image(str(tmp_path / "d" / "GT" / f"{i}.png"), clear)
    rows, examples = evaluate_pairs(find_pairs(str(tmp_path / "d")), [IdentityDehazer(), DCPDehazer()],
                                    keep_outputs=2)
    assert len(rows) == 6 and len(examples) == 2
    for _, hazy, outputs, clear in examples:
        assert hazy.shape[0] == clear.shape[0] == 180 and list(outputs) == ["dcp"]
        assert outputs["dcp"].shape[0] == 180


# ----------------------------------------------------------------------------- edge/convert.py, edge/benchmark.py
def test_convert_help_documents_every_option_and_the_output_names():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "edge", "convert.py"), "--help"], capture_output=True,
                          text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in ("--qat-steps", "--qat-crop", "--qat-batch", "--qat-lr", "--parity-images", "--threads", "--seed"):
        line = next(line for line in proc.stdout.splitlines() if line.strip().startswith(option))
        block = proc.stdout[proc.stdout.index(line):].split("\n  -")[0]
        assert len(block.split()) > 3, (option, block)  # an option with an explanation after it
    assert "<NAME>_<H>x<W>_int8.tflite" in proc.stdout and "aecrnet_default" in proc.stdout


def test_convert_accepts_bundled_names(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("edge_convert_script", os.path.join(ROOT, "edge", "convert.py"))
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    args = convert.parse_args(["--model", "aecrnet", "--out", str(tmp_path)])
    assert args.bundled == args.name == pretrained.AECRNET
    with pytest.raises(SystemExit):
        convert.parse_args(["--model", "no_such_net", "--out", str(tmp_path)])


def test_benchmark_prints_the_table_without_json(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "edge", "benchmark.py"), BUNDLED_TFLITE, "--threads", "1",
                           "--warmup", "0", "--runs", "1"], capture_output=True, text=True, env=ENV, cwd=str(tmp_path),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "aecrnet_default_int8.tflite" in proc.stdout and "wrote" not in proc.stdout
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".json")]
