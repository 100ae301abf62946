#!/usr/bin/env python3
"""Latency and memory benchmark of ``.tflite`` dehazing models (and optionally the Keras model).

``edge/benchmark.py`` parses the options and calls ``run_benchmark`` and ``print_table``::

    python edge/benchmark.py MODEL.tflite... [--sizes 256x256 460x620] [--threads 1 2]
        [--warmup 3] [--runs 10] [--keras CKPT.keras] [--json out.json]

For every model x size x thread count, a FRESH Python subprocess loads the model, runs
``--warmup`` untimed calls and ``--runs`` timed calls, and reports the median and minimum
latency and its peak memory (the process's RSS high-water mark, ``VmHWM`` from
``/proc/self/status`` or ``ru_maxrss``; ``rss_before_model_mb`` is the same process's RSS after
importing the interpreter and numpy, before loading the model, so the model's share is the
difference). One timed call = set the input tensor + ``invoke()`` + read the output tensor
(no image decoding, tiling or quantization in numpy). Inputs are random RGB in [0, 1],
quantized with the model's input scale/zero point for int8/uint8 models.

Sizes. A ``.tflite`` stores an input size. ``size_mode`` in every result says what was run:

* ``native``: the requested size is the model's own input size.
* ``resized``: the model's input signature is dynamic (-1), the input was resized with
  ``interpreter.resize_tensor_input``.
* ``resized-fixed``: the model has a fixed signature, but the interpreter accepted
  ``resize_tensor_input(strict=False)`` and produced an output of the requested size; the
  latency is valid, the output values at that size were not checked (a graph with baked-in
  shapes may compute something different from what it computes at its own size).
* ``unsupported``: the model cannot run at that size (``error`` says why); the model's own
  size is then also measured, so every model has at least one timing.

The Keras reference (``--keras``) is a ``tf_keras`` model loaded with ``keras_dehaze``'s
custom layers registered, called through ``tf.function`` (TensorFlow is imported only in that
worker; the TFLite workers import only numpy and ``keras_dehaze.edge.interpreter``). Its threads
are TensorFlow's intra-op threads (inter-op 1).

The table is always printed; with ``--json`` the full results are also written to that file.
Workers run this module: ``python -m keras_dehaze.edge.benchmark --_worker CONFIG_JSON``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

SCHEMA_VERSION = 1


# --------------------------------------------------------------------------- memory helpers

def _status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb():
    """Peak resident memory of this process in MiB (VmHWM, else ru_maxrss)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":  # bytes there
            kb /= 1024
    return kb / 1024.0


def current_rss_mb():
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def _stats(times_s):
    ms = [t * 1000.0 for t in times_s]
    return {
        "median_ms": statistics.median(ms),
        "min_ms": min(ms),
        "mean_ms": statistics.fmean(ms),
        "max_ms": max(ms),
        "times_ms": [round(t, 3) for t in ms],
    }


def _time_calls(call, warmup, runs):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


# --------------------------------------------------------------------------- workers

def _tflite_worker(cfg):
    import numpy as np

    from keras_dehaze.edge.interpreter import load_interpreter_class, quantization_params, quantize

    Interpreter, backend = load_interpreter_class()
    try:
        from importlib.metadata import version
        backend += " " + version("ai-edge-litert" if backend == "ai_edge_litert"
                                 else "tflite-runtime")
    except Exception:
        pass
    rss_before = current_rss_mb()
    interpreter = Interpreter(model_path=cfg["model"], num_threads=cfg["threads"])
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    shape = [int(v) for v in inp["shape"]]
    signature = [int(v) for v in inp.get("shape_signature", inp["shape"])]
    native = shape[1:3]
    dynamic = signature[1] < 0 or signature[2] < 0
    want = cfg["size"] or native
    result = {
        "backend": backend,
        "input_dtype": np.dtype(inp["dtype"]).name,
        "output_dtype": np.dtype(out["dtype"]).name,
        "native_size": None if dynamic else native,
        "input_signature": signature,
    }
    if dynamic:
        mode = "resized"
    elif list(want) == native:
        mode = "native"
    else:
        mode = "resized-fixed"
    if mode != "native":
        new_shape = [1, want[0], want[1], shape[3]]
        try:
            interpreter.resize_tensor_input(inp["index"], new_shape, strict=dynamic)
            interpreter.allocate_tensors()
            inp = interpreter.get_input_details()[0]
            out = interpreter.get_output_details()[0]
            probe = np.zeros(new_shape, dtype=inp["dtype"])
            interpreter.set_tensor(inp["index"], probe)
            interpreter.invoke()
            got = list(interpreter.get_tensor(out["index"]).shape)
            if got[1:3] != list(want):
                raise ValueError(f"output shape {got} does not match the requested size")
        except Exception as e:  # noqa: BLE001 - any failure means "cannot run at this size"
            result.update(size_mode="unsupported", run_size=None,
                          error=f"{type(e).__name__}: {str(e).strip()[:300]}")
            return result
    rng = np.random.default_rng(0)
    x = rng.random((1, want[0], want[1], shape[3]), dtype=np.float32)
    x = quantize(x, inp["dtype"], quantization_params(inp))  # outside the timed calls
    in_index, out_index = inp["index"], out["index"]

    def call():
        interpreter.set_tensor(in_index, x)
        interpreter.invoke()
        return interpreter.get_tensor(out_index)

    times = _time_calls(call, cfg["warmup"], cfg["runs"])
    if mode == "resized-fixed":
        result["note"] = ("fixed-signature model resized with resize_tensor_input(strict=False): "
                          "latency valid, outputs at this size not validated")
    result.update(size_mode=mode, run_size=list(want), rss_before_model_mb=rss_before,
                  peak_rss_mb=peak_rss_mb(), **_stats(times))
    return result


def _keras_worker(cfg):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(cfg["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import tf_keras as keras
    try:  # register the package's custom layers for deserialisation
        import keras_dehaze.layers  # noqa: F401
        import keras_dehaze.models  # noqa: F401
    except ImportError:
        pass
    rss_before = current_rss_mb()
    model = keras.models.load_model(cfg["model"], compile=False)
    in_shape = list(model.input_shape)
    native = in_shape[1:3]
    dynamic = native[0] is None or native[1] is None
    want = cfg["size"] or (native if not dynamic else [256, 256])
    result = {"backend": f"tensorflow {tf.__version__} tf.function (tf_keras)",
              "input_dtype": "float32", "output_dtype": "float32",
              "native_size": None if dynamic else native, "input_signature": in_shape}
    if dynamic:
        mode = "resized"
    elif list(want) == list(native):
        mode = "native"
    else:
        result.update(size_mode="unsupported", run_size=None,
                      error=f"the Keras model has a fixed input size {native}")
        return result
    x = tf.constant(np.random.default_rng(0).random((1, want[0], want[1], in_shape[3]),
                                                    dtype=np.float32))
    fn = tf.function(lambda t: model(t, training=False))

    def call():
        return fn(x).numpy()

    times = _time_calls(call, cfg["warmup"], cfg["runs"])
    result.update(size_mode=mode, run_size=list(want), rss_before_model_mb=rss_before,
                  peak_rss_mb=peak_rss_mb(), **_stats(times))
    return result


def _worker_main(cfg_json):
    cfg = json.loads(cfg_json)
    try:
        result = (_keras_worker if cfg["kind"] == "keras" else _tflite_worker)(cfg)
    except Exception as e:  # noqa: BLE001 - reported to the parent as a result row
        result = {"size_mode": "error", "error": f"{type(e).__name__}: {str(e).strip()[:500]}"}
    print("BENCHMARK_RESULT " + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- parent

def _run_worker(cfg, timeout):
    cmd = [sys.executable, "-m", "keras_dehaze.edge.benchmark", "--_worker", json.dumps(cfg)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"size_mode": "error", "error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCHMARK_RESULT "):
            return json.loads(line[len("BENCHMARK_RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"size_mode": "error",
            "error": f"worker exited with code {proc.returncode}: " + " | ".join(tail)}


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(rows, file=sys.stdout):
    header = (f"{'model':<28} {'kind':<6} {'dtype':<7} {'size':>9} {'mode':<13} {'thr':>3} "
              f"{'median ms':>10} {'min ms':>9} {'peak MB':>8} {'file MB':>8}")
    print(header, file=file)
    print("-" * len(header), file=file)
    for r in rows:
        size = r.get("run_size") or r.get("requested_size")
        size = f"{size[0]}x{size[1]}" if size else "native"
        name = os.path.basename(r["model"])
        if len(name) > 28:
            name = "..." + name[-25:]
        print(f"{name:<28} {r['kind']:<6} {str(r.get('input_dtype', '-')):<7} {size:>9} "
              f"{r.get('size_mode', '-'):<13} {r['threads']:>3} "
              f"{_fmt(r.get('median_ms'), '.2f'):>10} {_fmt(r.get('min_ms'), '.2f'):>9} "
              f"{_fmt(r.get('peak_rss_mb'), '.1f'):>8} "
              f"{_fmt(r['file_size_bytes'] / 1e6 if r.get('file_size_bytes') else None, '.3f'):>8}",
              file=file)
        if r.get("error"):
            print(f"    ({r['size_mode']}: {r['error']})", file=file)


def run_benchmark(models, keras_models=(), sizes=None, threads=(1,), warmup=3, runs=10, timeout=1800,
                  log=sys.stderr):
    """Times every model x size x thread count in a fresh worker process; returns the report dict
    (``results``: one row per run, plus the machine and the method). ``sizes``: (h, w) pairs, None
    for each model's own size. A model that cannot run at a requested size is also timed at its
    own size."""
    jobs = [(m, "tflite") for m in models] + [(k, "keras") for k in keras_models]
    rows = []
    for model, kind in jobs:
        file_size = os.path.getsize(model)
        for n_threads in threads:
            need_native = False
            for size in sizes or [None]:
                cfg = {"kind": kind, "model": model, "size": size, "threads": n_threads,
                       "warmup": warmup, "runs": runs}
                res = _run_worker(cfg, timeout)
                row = {"model": model, "kind": kind, "threads": n_threads,
                       "requested_size": size, "file_size_bytes": file_size,
                       "warmup": warmup, "runs": runs, **res}
                rows.append(row)
                if res.get("size_mode") == "unsupported":
                    need_native = True
                log.write(f"  {os.path.basename(model)} threads={n_threads} "
                          f"size={size or 'native'}: {res.get('size_mode')} "
                          f"{_fmt(res.get('median_ms'), '.2f')} ms\n")
            measured_native = any(r["model"] == model and r["threads"] == n_threads
                                  and r.get("size_mode") == "native" for r in rows)
            if need_native and not measured_native:
                cfg = {"kind": kind, "model": model, "size": None, "threads": n_threads,
                       "warmup": warmup, "runs": runs}
                res = _run_worker(cfg, timeout)
                rows.append({"model": model, "kind": kind, "threads": n_threads,
                             "requested_size": None, "file_size_bytes": file_size,
                             "warmup": warmup, "runs": runs, **res})
    return {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "machine": platform.machine(),
                    "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version()},
        "timing": "per call: set_tensor + invoke + get_tensor (TFLite) or tf.function call + "
                  ".numpy() (Keras); median/min over --runs after --warmup untimed calls; "
                  "each model x size x threads in a fresh subprocess",
        "memory": "peak_rss_mb = VmHWM (RSS high-water mark) of that subprocess, MiB",
        "warmup": warmup,
        "runs": runs,
        "results": rows,
    }


if __name__ == "__main__":  # a worker: python -m keras_dehaze.edge.benchmark --_worker CONFIG_JSON
    if len(sys.argv) != 3 or sys.argv[1] != "--_worker":
        sys.exit("this module runs benchmark workers; benchmark models with edge/benchmark.py")
    sys.exit(_worker_main(sys.argv[2]))
