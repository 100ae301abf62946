"""Executing .tflite models on LiteRT's GPU accelerator (keras_dehaze/edge/litert_gpu.py, edge runner).

ai-edge-litert 2.3.0's GPU accelerator is WebGPU (Dawn) over Vulkan; without a GPU, Mesa >= 25's
software driver lavapipe provides the adapter (.ci/install_vulkan.sh, VK_ICD_FILENAMES). Every
bundled float network (``bundled_float_presets()``) is converted at 64x64 to float32 and float16
once per module, run GPU-only (fully accelerated) and compared with the CPU interpreter:
>= 100 dB with ``enforce_f32``, >= 40 dB at the accelerator's default (fp16) precision.

Only AE-CR-Net's parity is in the default run (the LKD-Net conversions take 30-60 s each): the
others run with ``python -m pytest -m slow tests/edge/test_litert_gpu.py``.

Where no Vulkan adapter exists these tests skip, naming the reason; with
KERAS_DEHAZE_REQUIRE_GPU=1 (set by .ci/run) a missing adapter FAILS them instead.

Everything that touches the GPU accelerator runs in a subprocess without TensorFlow
(tests/edge/litert_gpu_worker.py, edge/infer.py): once the TFLite converter has run in a process
(the fixtures below convert in this one), creating a WebGPU model on lavapipe there crashes it
with a segmentation fault.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from keras_dehaze import pretrained
from keras_dehaze.edge import litert_gpu
import tests

REPO = Path(tests.REPO)
INFER = REPO / "edge" / "infer.py"
SIZE = 64  # lavapipe is a software rasteriser: keep GPU inputs small
REQUIRE_GPU = os.environ.get("KERAS_DEHAZE_REQUIRE_GPU") == "1"
PSNR_MIN = {"fp32": 100.0, "default": 40.0}  # GPU vs CPU interpreter, by --gpu-precision

# Bundled networks whose float .tflite is known NOT to run fully on the GPU accelerator, with
# the reason. Empty today; every other bundled network is tested.
GPU_EXCLUDED = {}


def bundled_float_presets():
    """The single list of bundled float networks checked on the GPU accelerator: one preset per
    architecture shipped in keras_dehaze/weights (``pretrained.available()``), except
    ``GPU_EXCLUDED``. Presets of one architecture differ only in weight values, which change
    neither the graph nor which ops the accelerator takes, so the first of each stands for all
    (the default preset first: it is the one users run)."""
    names = sorted(pretrained.available(), key=lambda n: n != pretrained.DEFAULT)
    seen, chosen = set(), []
    for name in names:
        meta = pretrained.metadata(name)
        architecture = (meta["model"], json.dumps(meta.get("args", {}), sort_keys=True))
        if name not in GPU_EXCLUDED and architecture not in seen:
            seen.add(architecture)
            chosen.append(name)
    return chosen


def _no_gpu(reason):
    if REQUIRE_GPU:
        pytest.fail(f"KERAS_DEHAZE_REQUIRE_GPU=1 but the GPU accelerator is unavailable: {reason}")
    pytest.skip(f"no GPU accelerator: {reason}")


WORKER = Path(__file__).resolve().parent / "litert_gpu_worker.py"


def gpu_jobs(*jobs):
    """Runs jobs ({"path", "enforce_f32", "allow_partial"}) in tests/edge/litert_gpu_worker.py, a
    process without TensorFlow; returns its result dicts."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    jobs = [dict(job, path=str(job["path"])) for job in jobs]
    out = subprocess.run([sys.executable, str(WORKER), json.dumps(jobs)], capture_output=True,
                         text=True, timeout=600, env=env, cwd=str(REPO))
    assert out.returncode == 0, f"worker exit {out.returncode}: {out.stderr[-3000:]}"
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for r in results:
        if not r["ok"] and r["error_type"] in ("GpuUnavailableError", "ImportError"):
            _no_gpu(r["error"])
    return results


def hazy_input(h=SIZE, w=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    clear = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    t = np.linspace(0.4, 0.9, h, dtype=np.float32)[:, None, None]
    return np.clip(clear * t + 0.8 * (1 - t), 0, 1)[None].astype(np.float32)


# ---------------------------------------------------------------------------- fixtures

def _preset_params():
    """The default run checks AE-CR-Net, the bundled network that converts fastest (about 10 s for
    float32 and float16 against 30-60 s for an LKD-Net); every other one runs with -m slow."""
    return [pytest.param(name, marks=() if name == pretrained.AECRNET else pytest.mark.slow)
            for name in bundled_float_presets()]


@pytest.fixture(scope="module", params=_preset_params())
def bundled_tflite(request, tmp_path_factory):
    """(name, {"float32": path, "float16": path}) of a bundled network at 64x64, batch 1."""
    from keras_dehaze.backend import tf
    from keras_dehaze.edge.export import convert
    from keras_dehaze.edge.quantization import rebuild_fixed

    try:
        tf.config.threading.set_intra_op_parallelism_threads(2)
    except RuntimeError:  # TensorFlow already initialised by an earlier test
        pass
    name = request.param
    start = time.perf_counter()
    model = pretrained.load_pretrained(name)
    # The float export's index math, as edge/convert.py does it (DCN models only).
    has_dcn = any("index_math" in layer.get_config() for layer in model.layers)
    fixed = rebuild_fixed(model, SIZE, SIZE, batch_size=1, **({"index_math": "float"} if has_dcn else {}))
    out = tmp_path_factory.mktemp(f"gpu_{name}")
    paths = {}
    for mode in ("float32", "float16"):
        paths[mode] = out / f"{name}_{SIZE}x{SIZE}_{mode}.tflite"
        paths[mode].write_bytes(convert(fixed, mode))
    print(f"\n{name}: float32/float16 .tflite at {SIZE}x{SIZE} built in "
          f"{time.perf_counter() - start:.1f} s")
    return name, paths


PARITY_CASES = [("float32", "fp32"), ("float16", "fp32"), ("float32", "default"),
                ("float16", "default")]


@pytest.fixture(scope="module")
def gpu_parity(bundled_tflite):
    """{(mode, precision): worker result} for the bundled network: one worker process."""
    name, paths = bundled_tflite
    start = time.perf_counter()
    results = gpu_jobs(*[{"path": paths[mode], "enforce_f32": precision == "fp32"}
                         for mode, precision in PARITY_CASES])
    print(f"\n{name}: {len(PARITY_CASES)} GPU compile+run+CPU reference in "
          f"{time.perf_counter() - start:.1f} s")
    return name, dict(zip(PARITY_CASES, results))


@pytest.fixture(scope="module")
def gather_nd_tflite(tmp_path_factory):
    import tensorflow as tf

    fn = tf.function(lambda x: tf.gather_nd(x * 2.0, tf.constant([[0, 1, 2], [0, 3, 4]])) + 1.0)
    cf = fn.get_concrete_function(tf.TensorSpec([1, 8, 8, 3], tf.float32))
    path = tmp_path_factory.mktemp("gather_nd") / "gather_nd.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([cf], None).convert())
    return path


# ---------------------------------------------------------------------------- parity

@pytest.mark.parametrize("mode,precision", PARITY_CASES)
def test_bundled_float_model_fully_on_gpu_matches_cpu(gpu_parity, mode, precision):
    name, results = gpu_parity
    r = results[(mode, precision)]
    assert r["ok"], f"{name} {mode} {precision}: {r['error_type']}: {r['error']}"
    assert r["fully_accelerated"], f"{name} {mode}: not fully accelerated"
    # Evidence the graph went to the WebGPU accelerator (not a silent CPU fallback).
    assert r["accelerator_log"] and litert_gpu.WEBGPU_LOG_LINE in r["accelerator_log"][0]
    assert r["shape"] == [1, SIZE, SIZE, 3] and r["finite"]
    value = float("inf") if r["psnr"] is None else r["psnr"]
    print(f"\nGPU parity: {name} {mode} .tflite, precision {precision}, fully accelerated "
          f"{r['fully_accelerated']}, PSNR vs CPU {value:.1f} dB, max |diff| "
          f"{r['max_abs_diff']:.2e} (compile + run {r['gpu_seconds']:.1f} s); "
          f"log: {r['accelerator_log'][0]}")
    assert value >= PSNR_MIN[precision], f"{name} {mode} {precision}: {value:.1f} dB"


def test_bundled_presets_list_is_not_empty():
    assert "aecrnet_default" in bundled_float_presets()


# ---------------------------------------------------------------------------- refusals

def test_gather_nd_refused_gpu_only_and_runs_with_cpu_fallback(gather_nd_tflite):
    refused, partial = gpu_jobs({"path": gather_nd_tflite},
                                {"path": gather_nd_tflite, "allow_partial": True})
    assert not refused["ok"] and refused["error_type"] == "GpuPartialAccelerationError"
    assert refused["unsupported_ops"] == ["GATHER_ND"]
    assert "GATHER_ND" in refused["error"] and "allow_partial" in refused["error"]
    assert partial["ok"] and partial["fully_accelerated"] is False
    assert partial["max_abs_diff"] <= 1e-6  # GPU (mul, add) + CPU (GATHER_ND) == CPU


def test_missing_adapter_is_a_clear_error(tmp_path, gather_nd_tflite):
    """A hidden Vulkan driver gives GpuUnavailableError naming the problem (runs everywhere)."""
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None\n"
        "from keras_dehaze.edge import litert_gpu\n"
        "try:\n"
        f"    litert_gpu.compile_on_gpu({str(gather_nd_tflite)!r}, verbose=False)\n"
        "except litert_gpu.GpuUnavailableError as e:\n"
        "    print('UNAVAILABLE', e)\n"
        "except ImportError as e:\n"
        "    print('NOAPI', e)\n"
    )
    env = dict(os.environ, VK_ICD_FILENAMES=str(tmp_path / "no_such_icd.json"),
               VK_DRIVER_FILES=str(tmp_path / "no_such_icd.json"), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env, cwd=str(REPO))
    assert out.returncode == 0, out.stderr[-2000:]
    if out.stdout.startswith("NOAPI"):
        pytest.skip(out.stdout)
    assert out.stdout.startswith("UNAVAILABLE"), out.stdout + out.stderr[-2000:]
    assert "No adapters found" in out.stdout
    assert "lavapipe" in out.stdout and "no_such_icd.json (missing" in out.stdout


# ---------------------------------------------------------------------------- the edge runner

def run_infer(args):
    """edge/infer.py in a subprocess where TensorFlow cannot be imported."""
    code = ("import sys\n"
            "for name in ('tensorflow', 'tf_keras', 'keras'):\n"
            "    sys.modules[name] = None\n"
            "import runpy\n"
            f"sys.argv = {[str(INFER)] + [str(a) for a in args]!r}\n"
            f"runpy.run_path({str(INFER)!r}, run_name='__main__')\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env, cwd=str(INFER.parent))


def skip_without_adapter(out):
    """Skips (fails under REQUIRE_GPU) when infer.py exited 2 for lack of a GPU adapter."""
    if out.returncode == 2 and "no GPU adapter" in out.stderr:
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        _no_gpu(errors[-1] if errors else out.stderr[-500:])


def test_edge_runner_gpu_matches_cpu(bundled_tflite, tmp_path):
    name, paths = bundled_tflite
    image = tmp_path / "hazy.png"
    cv2.imwrite(str(image), np.round(hazy_input(seed=3)[0, :, :, ::-1] * 255).astype(np.uint8))
    results = {}
    for accelerator in ("cpu", "gpu"):
        out = run_infer(["--model", paths["float32"], image, "-o", tmp_path / accelerator,
                         "--accelerator", accelerator, "--gpu-precision", "fp32", "--threads", "2"])
        if accelerator == "gpu":
            skip_without_adapter(out)
        assert out.returncode == 0, out.stdout + out.stderr[-3000:]
        results[accelerator] = cv2.imread(str(tmp_path / accelerator / "hazy_dehazed.png"))
    assert "accelerator=gpu (LiteRT WebGPU, precision fp32, fully accelerated=True)" in out.stdout
    assert litert_gpu.WEBGPU_LOG_LINE in out.stderr
    diff = np.abs(results["cpu"].astype(int) - results["gpu"].astype(int))
    assert diff.max() <= 1, f"{name}: 8-bit outputs differ by {diff.max()}"


def test_edge_runner_refuses_int8_model_on_gpu(tmp_path):
    """The bundled int8 AE-CR-Net has an int8 TRANSPOSE_CONV the accelerator does not take:
    GPU-only is refused with the operator named (exit 2), not run half on the CPU."""
    int8 = [os.path.join(pretrained.WEIGHTS_DIR, f) for f in sorted(os.listdir(pretrained.WEIGHTS_DIR))
            if f.endswith("_int8.tflite")]
    if not int8:
        pytest.skip("no bundled int8 model")
    image = tmp_path / "hazy.png"
    cv2.imwrite(str(image), np.full((8, 8, 3), 128, np.uint8))
    out = run_infer(["--model", int8[0], image, "-o", tmp_path / "out", "--accelerator", "gpu"])
    skip_without_adapter(out)
    assert out.returncode == 2, out.stdout + out.stderr[-3000:]
    assert "not supported by the GPU accelerator: TRANSPOSE_CONV" in out.stderr
    assert "--gpu-allow-partial" in out.stderr
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_runner_argument_validation(tmp_path):
    from keras_dehaze.edge import runner as edge_runner
    from keras_dehaze.edge import tflite_dehazer
    from keras_dehaze.edge.tflite_dehazer import TFLiteDehazer

    dummy = tmp_path / "m.tflite"
    dummy.write_bytes(b"x")
    with pytest.raises(ValueError, match="accelerator must be one of"):
        TFLiteDehazer(dummy, accelerator="npu")
    with pytest.raises(ValueError, match="gpu_precision must be one of"):
        TFLiteDehazer(dummy, accelerator="gpu", gpu_precision="fp8")
    args = edge_runner.build_parser().parse_args(["x.png", "-m", "m.tflite", "-o", "out"])
    assert (args.accelerator, args.gpu_precision, args.gpu_allow_partial) == ("cpu", "fp32", False)
    # With the package imported, the runner raises the package's exception classes.
    assert tflite_dehazer.litert_gpu is litert_gpu
