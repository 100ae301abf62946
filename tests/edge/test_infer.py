"""edge/infer.py (the TensorFlow-free .tflite runner, keras_dehaze.edge.runner) and edge/benchmark.py.

Tiny models are built with TensorFlow in this test process (conv 3x3 -> relu -> conv 3x3 ->
sigmoid, fixed input [1, 32, 32, 3]): float32, full-integer int8 (int8 I/O and uint8 I/O) from a
representative dataset, and a dynamic-size float32 twin with the same weights. The runner itself
is always started in a SUBPROCESS in which importing tensorflow / tf_keras / keras fails, exactly
like a Raspberry Pi with only ai-edge-litert, numpy, opencv and the runner's files
(``DEVICE_FILES``; test_deployed_copy_without_repository runs such a copy).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_dehaze import tiling
from keras_dehaze.edge import runner
from keras_dehaze.edge.tflite_dehazer import TFLiteDehazer
from tests import REPO as ROOT

INFER = os.path.join(ROOT, "edge", "infer.py")
BENCHMARK = os.path.join(ROOT, "edge", "benchmark.py")
SIZE = 32
BLOCKED = ("tensorflow", "tf_keras", "keras")


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import tensorflow as tf
    import tf_keras as keras

    out = tmp_path_factory.mktemp("models")

    def build(shape):
        keras.utils.set_random_seed(0)
        x = keras.Input(shape=shape, batch_size=1)
        y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        y = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid")(y)
        return keras.Model(x, y)

    def rep():
        rng = np.random.default_rng(1)
        for _ in range(16):
            yield [rng.random((1, SIZE, SIZE, 3), dtype=np.float32)]

    def save(name, converter):
        path = out / name
        path.write_bytes(converter.convert())
        return str(path)

    fixed = build((SIZE, SIZE, 3))
    dynamic = build((None, None, 3))
    dynamic.set_weights(fixed.get_weights())
    paths = {"f32": save("tiny_f32.tflite", tf.lite.TFLiteConverter.from_keras_model(fixed)),
             "dyn": save("tiny_dyn.tflite", tf.lite.TFLiteConverter.from_keras_model(dynamic))}
    for name, io_type in (("i8", tf.int8), ("u8", tf.uint8)):
        conv = tf.lite.TFLiteConverter.from_keras_model(fixed)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
        paths[name] = save(f"tiny_{name}.tflite", conv)
    # A model with baked-in shapes (flatten -> dense -> reshape): cannot run at other sizes.
    x = keras.Input(shape=(SIZE, SIZE, 3), batch_size=1)
    y = keras.layers.Dense(4)(keras.layers.Flatten()(x))
    y = keras.layers.Reshape((SIZE, SIZE, 3))(keras.layers.Dense(SIZE * SIZE * 3)(y))
    paths["reshape"] = save("tiny_reshape.tflite",
                            tf.lite.TFLiteConverter.from_keras_model(keras.Model(x, y)))
    fixed.save(out / "tiny.keras")
    paths["keras"] = str(out / "tiny.keras")
    return paths


def write(path, array):
    assert cv2.imwrite(str(path), array), path
    return str(path)


def rgb8(h, w, seed):
    """A photo-like 8-bit BGR image (smooth + noise)."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img += 0.05 * rng.standard_normal(img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def run_infer(args, script=INFER, blocked=BLOCKED, device_copy=None):
    """Runs infer.py in a fresh interpreter where `blocked` modules cannot be imported; with
    `device_copy` (a folder holding a copy of the runner's files), runs that copy as on a device
    (``python -m keras_dehaze.edge.runner`` in that folder) and prints where keras_dehaze came from."""
    run = (f"runpy.run_path({script!r}, run_name='__main__')\n" if device_copy is None else
           # a device has no keras_dehaze installed: without this, an editable install's finder
           # would supply modules missing from the copy
           "sys.meta_path[:] = [f for f in sys.meta_path\n"
           "                    if not str(getattr(f, '__module__', '')).startswith('__editable__')]\n"
           "import keras_dehaze; print('PACKAGE', keras_dehaze.__file__)\n"
           "runpy.run_module('keras_dehaze.edge.runner', run_name='__main__', alter_sys=True)\n")
    code = ("import sys\n"
            f"for name in {list(blocked)!r}:\n"
            "    sys.modules[name] = None\n"
            "import runpy\n"
            f"sys.argv = {[script] + [str(a) for a in args]!r}\n" + run)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=str(device_copy) if device_copy is not None else os.path.dirname(script))


def read_out(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img[:, :, ::-1].astype(np.float32) / scale


def direct(model_path, rgb_float):
    """The model applied directly with the interpreter (dynamic models resized to the image)."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=model_path)
    inp = it.get_input_details()[0]
    if inp["shape_signature"][1] < 0:
        it.resize_tensor_input(inp["index"], [1, *rgb_float.shape])
    it.allocate_tensors()
    it.set_tensor(inp["index"], rgb_float[None].astype(np.float32))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])[0]


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ---------------------------------------------------------------------------- runner

def test_exact_model_size_matches_direct_interpreter(models, tmp_path):
    src = write(tmp_path / "exact.png", rgb8(SIZE, SIZE, 0))
    proc = run_infer(["--model", models["f32"], src, "-o", tmp_path / "out", "--threads", "1"])
    assert proc.returncode == 0, proc.stderr
    assert "1 run(s)" in proc.stdout
    got = read_out(tmp_path / "out" / "exact_dehazed.png")
    rgb = cv2.imread(src)[:, :, ::-1].astype(np.float32) / 255
    want = direct(models["f32"], rgb)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only


def test_any_size_and_format(models, tmp_path):
    """Smaller, odd, larger-than-tile (tiling), 16-bit gray and RGBA inputs; threads 2."""
    src = tmp_path / "in"
    src.mkdir()
    write(src / "small_odd.png", rgb8(19, 23, 1))
    write(src / "large_odd.png", rgb8(75, 101, 2))
    write(src / "wide.jpg", rgb8(21, 150, 3))
    gray16 = (cv2.cvtColor(rgb8(40, 9, 4), cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    write(src / "gray16.png", gray16)
    write(src / "rgba.png", np.dstack([rgb8(50, 50, 5), np.full((50, 50), 7, np.uint8)]))
    out = tmp_path / "out"
    # --no-resize: tiles of the model's own 32x32 size (the tiling and its seams are tested
    # here; resized runs in test_fixed_model_resized_*).
    proc = run_infer(["--model", models["f32"], src, "-o", out, "--threads", "2", "--no-resize"])
    assert proc.returncode == 0, proc.stderr
    assert "5 image(s) written, 0 failed" in proc.stdout
    shapes = {"small_odd": (19, 23), "large_odd": (75, 101), "wide": (21, 150),
              "gray16": (40, 9), "rgba": (50, 50)}
    for stem, shape in shapes.items():
        img = cv2.imread(str(out / f"{stem}_dehazed.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == shape + (3,), stem
        assert img.dtype == (np.uint16 if stem == "gray16" else np.uint8), stem
    # The tiled result equals the same weights applied to the whole image at once (dynamic
    # twin), seams included, away from the 2-pixel bottom/right image border (receptive field
    # of two 3x3 convs): the last tiles start on multiples of 4 and reach up to 3 pixels past
    # the image, which is padded by reflection there, the whole-image run sees zeros.
    assert "12 run(s)" in proc.stdout  # 75x101 with 32x32 tiles: 3 x 4 tiles
    rgb = cv2.imread(str(src / "large_odd.png"))[:, :, ::-1].astype(np.float32) / 255
    whole = direct(models["dyn"], rgb)
    tiled = read_out(out / "large_odd_dehazed.png")
    assert np.abs(tiled - whole)[:-2, :-2].max() <= 0.5 / 255 + 1e-6


def test_dynamic_model_runs_whole_image_padded(models, tmp_path):
    src = write(tmp_path / "odd.png", rgb8(45, 61, 6))
    proc = run_infer(["--model", models["dyn"], src, "-o", tmp_path / "o"])
    assert proc.returncode == 0, proc.stderr
    assert "input=dynamic" in proc.stdout and "1 run(s)" in proc.stdout
    rgb = cv2.imread(src)[:, :, ::-1].astype(np.float32) / 255
    got = read_out(tmp_path / "o" / "odd_dehazed.png")
    want = direct(models["dyn"], rgb)
    # Padding to a multiple of 4 (reflect, bottom/right) only changes the last 2 rows/cols.
    assert np.abs(got - want)[:-2, :-2].max() <= 0.5 / 255 + 1e-6
    proc = run_infer(["--model", models["dyn"], src, "-o", tmp_path / "t", "--tile", "16x24",
                      "--tile-overlap", "8"])
    assert proc.returncode == 0, proc.stderr
    assert np.abs(read_out(tmp_path / "t" / "odd_dehazed.png") - want)[:-2, :-2].max() \
        <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("name", ["i8", "u8"])
def test_int8_models_close_to_float(models, tmp_path, name):
    src = tmp_path / "in"
    src.mkdir()
    write(src / "a.png", rgb8(SIZE, SIZE, 7))
    write(src / "b.png", rgb8(70, 45, 8))
    for key in ("f32", name):
        proc = run_infer(["--model", models[key], src, "-o", tmp_path / key])
        assert proc.returncode == 0, proc.stderr
    assert f"input=32x32 {'int8' if name == 'i8' else 'uint8'}" in proc.stdout
    for stem in ("a", "b"):
        f = read_out(tmp_path / "f32" / f"{stem}_dehazed.png")
        q = read_out(tmp_path / name / f"{stem}_dehazed.png")
        # Measured (this model, calibrated on uniform noise, smooth 45x70 input): max
        # |int8 - float| 7/255, mean 0.3/255 (before the 8-bit PNG rounding of both).
        assert np.abs(f - q).max() < 0.05 and np.abs(f - q).mean() < 0.005


def test_bad_files_are_reported_and_skipped(models, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good = write(src / "good.png", rgb8(40, 40, 9))
    png = open(good, "rb").read()
    (src / "truncated.png").write_bytes(png[: len(png) // 2])
    ok, jpg = cv2.imencode(".jpg", rgb8(64, 64, 10))
    (src / "truncated.jpg").write_bytes(jpg.tobytes()[:-200])
    (src / "notimage.jpg").write_text("<html>not an image</html>")
    (src / "empty.png").write_bytes(b"")
    write(src / "zgood.jpg", rgb8(33, 35, 11))
    out = tmp_path / "out"
    proc = run_infer(["--model", models["f32"], src, "-o", out])
    assert proc.returncode == 1
    for bad in ("truncated.png", "truncated.jpg", "notimage.jpg", "empty.png"):
        assert str(src / bad) in proc.stderr, (bad, proc.stderr)
        assert not (out / (bad.split(".")[0] + "_dehazed.png")).exists()
    assert "truncated PNG" in proc.stderr and "truncated JPEG" in proc.stderr
    assert "empty file" in proc.stderr
    assert sorted(os.listdir(out)) == ["good_dehazed.png", "zgood_dehazed.png"]
    assert "2 image(s) written, 4 failed" in proc.stderr


def test_inputs_untouched_and_never_overwritten(models, tmp_path):
    """Outputs go next to the inputs (-o = the input folder): 'x.png' would be written to
    'x_dehazed.png', which is itself an input, so that one is refused; nothing is modified."""
    d = tmp_path / "photos"
    d.mkdir()
    write(d / "x.png", rgb8(30, 40, 12))
    write(d / "x_dehazed.png", rgb8(30, 40, 13))
    write(d / "y.jpg", rgb8(50, 20, 14))
    before = {p: digest(d / p) for p in os.listdir(d)}
    proc = run_infer(["--model", models["f32"], d, "-o", d])
    assert proc.returncode == 1
    assert "refusing to write" in proc.stderr and str(d / "x_dehazed.png") in proc.stderr
    for p, h in before.items():
        assert digest(d / p) == h, p
    assert (d / "x_dehazed_dehazed.png").exists() and (d / "y_dehazed.png").exists()


def test_globs_duplicates_and_missing_inputs(models, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        write(tmp_path / sub / "same.png", rgb8(20, 20, 15))
    out = tmp_path / "out"
    proc = run_infer(["--model", models["f32"], str(tmp_path / "*" / "same.png"),
                      tmp_path / "missing.png", str(tmp_path / "nothing*.png"), "-o", out])
    assert proc.returncode == 1
    assert f"{tmp_path / 'missing.png'}: no such file" in proc.stderr
    assert "no file matches" in proc.stderr
    assert sorted(os.listdir(out)) == ["same_dehazed.png", "same_dehazed_2.png"]


def test_setup_errors(models, tmp_path):
    src = write(tmp_path / "a.png", rgb8(20, 20, 16))
    proc = run_infer(["--model", models["f32"], src, "-o", tmp_path / "o"],
                     blocked=BLOCKED + ("ai_edge_litert", "tflite_runtime"))
    assert proc.returncode == 2
    assert "No TFLite interpreter" in proc.stderr and "pip install ai-edge-litert" in proc.stderr
    proc = run_infer(["--model", tmp_path / "nope.tflite", src, "-o", tmp_path / "o"])
    assert proc.returncode == 2 and "model file not found" in proc.stderr
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer" * 10)
    proc = run_infer(["--model", tmp_path / "junk.tflite", src, "-o", tmp_path / "o"])
    assert proc.returncode == 2 and "cannot load the TFLite model" in proc.stderr
    proc = run_infer(["--model", models["f32"], src, "-o", tmp_path / "o",
                      "--tile-overlap", "32"])
    assert proc.returncode == 2 and "overlap" in proc.stderr
    proc = run_infer(["--model", models["f32"], src, "-o", tmp_path / "o", "--threads", "0"])
    assert proc.returncode == 2


def test_deployed_copy_without_repository(models, tmp_path):
    """On a device: only the runner's files (DEVICE_FILES), outside the repository."""
    pi = tmp_path / "pi"
    runner.copy_device_files(pi)
    os.remove(pi / "keras_dehaze" / "tiling.py")
    src = write(tmp_path / "a.png", rgb8(50, 70, 17))
    proc = run_infer(["--model", models["i8"], src, "-o", tmp_path / "o"], device_copy=pi)
    assert proc.returncode == 2 and "tiling.py not found" in proc.stderr
    shutil.copy(tiling.__file__, pi / "keras_dehaze" / "tiling.py")
    proc = run_infer(["--model", models["i8"], src, "-o", tmp_path / "o", "--threads", "2"],
                     device_copy=pi)
    assert proc.returncode == 0, proc.stderr
    assert f"PACKAGE {pi / 'keras_dehaze' / '__init__.py'}" in proc.stdout  # the copy, not the repository
    assert read_out(tmp_path / "o" / "a_dehazed.png").shape == (50, 70, 3)


def test_device_files_are_what_the_runner_imports(models, tmp_path):
    """DEVICE_FILES is exactly the package's modules a run of the runner imports, and none of
    them imports TensorFlow (or another heavy dependency)."""
    src = write(tmp_path / "a.png", rgb8(40, 40, 18))
    code = ("import sys, runpy\n"
            f"sys.argv = ['infer.py', '--model', {models['i8']!r}, {src!r}, '-o', {str(tmp_path / 'o')!r}, '-q']\n"
            "try:\n"
            f"    runpy.run_path({INFER!r}, run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "import keras_dehaze\n"
            "root = keras_dehaze.__file__.rsplit('keras_dehaze', 1)[0]\n"
            "print('FILES', sorted(m.__file__[len(root):] for name, m in sys.modules.items()\n"
            "                      if name.split('.')[0] == 'keras_dehaze'))\n"
            "print('HEAVY', sorted(name for name in ('tensorflow', 'tf_keras', 'keras', 'tqdm', 'yaml')\n"
            "                      if name in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    files = next(line for line in proc.stdout.splitlines() if line.startswith("FILES "))
    assert files == f"FILES {sorted(runner.DEVICE_FILES)}"
    assert "HEAVY []" in proc.stdout


def test_python_api(models):
    d = TFLiteDehazer(models["f32"], threads=1, resize=False)
    assert d.input_size == (SIZE, SIZE) and d.input_dtype == np.float32 and not d.dynamic
    assert TFLiteDehazer(models["i8"]).input_dtype == np.int8
    assert TFLiteDehazer(models["u8"]).input_dtype == np.uint8
    assert TFLiteDehazer(models["dyn"]).input_size is None
    img = np.random.default_rng(0).random((37, 53, 3), dtype=np.float32)
    out = d.dehaze(img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    assert d.last_tiles == 4
    with pytest.raises(ValueError, match="RGB"):
        d.dehaze(img[:, :, :1])


def test_fixed_model_resized_equals_conversion_at_that_size(models, tmp_path):
    """A fixed 32x32 conversion run at 48x64 (resize_tensor_input) computes exactly what the
    same weights converted for a dynamic size compute at 48x64 (float32), and the int8 file
    resized stays as close to float as at its own size."""
    rgb = rgb8(48, 64, 20)[:, :, ::-1].astype(np.float32) / 255
    d = TFLiteDehazer(models["f32"], threads=1)
    out = d.dehaze(rgb)
    assert d.last_plan == ("whole", (48, 64)) and d.last_tiles == 1 and d.resizable
    assert np.abs(out - np.clip(direct(models["dyn"], rgb), 0, 1)).max() <= 1e-6
    q = TFLiteDehazer(models["i8"], threads=1)
    out_q = q.dehaze(rgb)
    assert q.last_plan == ("whole", (48, 64))
    assert np.abs(out_q - out).max() < 0.05 and np.abs(out_q - out).mean() < 0.005
    # Odd sizes are padded to a multiple of 4 (reflect) and cropped back.
    odd = rgb8(45, 61, 21)[:, :, ::-1].astype(np.float32) / 255
    got = d.dehaze(odd)
    assert got.shape == odd.shape and d.last_plan == ("whole", (48, 64))
    assert np.abs(got - np.clip(direct(models["dyn"], odd), 0, 1))[:-2, :-2].max() <= 1e-6


def test_model_with_baked_shapes_falls_back_to_its_own_size(models):
    d = TFLiteDehazer(models["reshape"], threads=1)
    img = np.random.default_rng(2).random((40, 50, 3), dtype=np.float32)
    out = d.dehaze(img)
    assert out.shape == img.shape and d.resizable is False and d.resize_error
    assert d.last_plan == ("fixed", (SIZE, SIZE)) and d.last_tiles == 4


def test_whole_image_or_tiles_follows_the_pixel_budget(models, tmp_path):
    rgb = rgb8(75, 101, 2)[:, :, ::-1].astype(np.float32) / 255
    whole = np.clip(direct(models["dyn"], rgb), 0, 1)
    d = TFLiteDehazer(models["f32"], threads=1, max_pixels=76 * 104)
    assert d.plan(75, 101) == ("whole", (76, 104))
    assert np.abs(d.dehaze(rgb) - whole)[:-2, :-2].max() <= 1e-6 and d.last_tiles == 1
    # A budget of 2000 pixels: the fewest equal tiles within it, overlapping by tile_overlap
    # (the default 32 would not fit; 8 here), every tile the same size.
    t = TFLiteDehazer(models["f32"], threads=1, max_pixels=2000, tile_overlap=8)
    mode, (th, tw) = t.plan(75, 101)
    assert mode == "tiles" and th * tw <= 2000 and th % 4 == 0 and tw % 4 == 0
    shapes = []
    t.run = lambda batch, run=t.run: (shapes.append(batch.shape), run(batch))[1]
    out = t.dehaze(rgb)
    assert set(shapes) == {(1, th, tw, 3)} and t.last_tiles == len(shapes) > 1
    assert t.last_tiles == tiling.count_tiles((75, 101), (th, tw), 8, 4)
    # Seams invisible: equal to the whole-image run away from the image border (3x3 convs).
    assert np.abs(out - whole)[:-2, :-2].max() <= 1e-6
    # Tiny images are padded up to min(model size, 64) per side.
    assert d.plan(10, 20) == ("whole", (SIZE, SIZE))
    proc = run_infer(["--model", models["f32"], write(tmp_path / "a.png", rgb8(75, 101, 2)),
                      "-o", tmp_path / "o", "--max-megapixels", "0.002", "--tile-overlap", "8",
                      "--work-megapixels", "0"])  # full resolution: the tiles under test
    assert proc.returncode == 0, proc.stderr
    assert f"{t.last_tiles} run(s), tiles {tw}x{th}" in proc.stdout


# ---------------------------------------------------------------------------- benchmark

def test_benchmark_smoke(models, tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, BENCHMARK, models["f32"], models["i8"], models["dyn"],
           models["reshape"], "--sizes", "32x32", "48x64", "--threads", "1", "2",
           "--warmup", "1", "--runs", "2", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "median ms" in proc.stdout
    report = json.loads(out.read_text())
    assert report["runs"] == 2 and report["warmup"] == 1
    assert report["machine"]["cpu_count"] == os.cpu_count()
    rows = report["results"]
    # The Keras reference (TensorFlow imported in its worker only): one thread count, to keep
    # the number of TensorFlow start-ups small.
    out_keras = tmp_path / "keras.json"
    cmd = [sys.executable, BENCHMARK, "--keras", models["keras"], "--sizes", "32x32", "48x64",
           "--threads", "1", "--warmup", "1", "--runs", "2", "--json", str(out_keras)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows += json.loads(out_keras.read_text())["results"]
    by = {(os.path.basename(r["model"]), r["threads"], tuple(r["requested_size"] or ())): r
          for r in rows}
    for r in rows:
        assert {"model", "kind", "threads", "file_size_bytes", "size_mode"} <= set(r)
        assert r["file_size_bytes"] == os.path.getsize(r["model"])
        if r["size_mode"] in ("native", "resized", "resized-fixed"):
            assert len(r["times_ms"]) == 2
            assert r["min_ms"] <= r["median_ms"]
            assert r["peak_rss_mb"] > 10 and r["rss_before_model_mb"] > 0
    assert by[("tiny_f32.tflite", 1, (32, 32))]["size_mode"] == "native"
    assert by[("tiny_i8.tflite", 2, (32, 32))]["input_dtype"] == "int8"
    assert by[("tiny_dyn.tflite", 1, (48, 64))]["size_mode"] == "resized"
    assert by[("tiny_f32.tflite", 1, (48, 64))]["size_mode"] == "resized-fixed"
    assert by[("tiny_f32.tflite", 1, (48, 64))]["run_size"] == [48, 64]
    bad = by[("tiny_reshape.tflite", 1, (48, 64))]
    assert bad["size_mode"] == "unsupported" and bad["error"]
    keras_rows = [r for r in rows if r["kind"] == "keras"]
    assert {r["size_mode"] for r in keras_rows} == {"native", "unsupported"}
    assert all(r["backend"].startswith("tensorflow") for r in keras_rows)


def test_large_photo_runs_once_at_the_working_resolution(models, tmp_path):
    """Default large-photo path: one run of the whole photo at --work-megapixels, guided
    upsampling to full size (keras_dehaze.guided_upsampling), TensorFlow still not imported."""
    src = write(tmp_path / "big.png", rgb8(300, 400, 5))
    proc = run_infer(["--model", models["dyn"], src, "-o", tmp_path / "o", "--work-megapixels", "0.01"])
    assert proc.returncode == 0, proc.stderr
    assert "1 run(s), guided upsampling from" in proc.stdout
    out = cv2.imread(str(tmp_path / "o" / "big_dehazed.png"))
    assert out.shape == (300, 400, 3)
