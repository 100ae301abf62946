"""Runs .tflite files on LiteRT's GPU accelerator and on the CPU interpreter; prints JSON.

Started by tests/edge/test_litert_gpu.py in a SEPARATE process in which TensorFlow cannot be imported:
after the TFLite converter has run in a process, creating a WebGPU model on lavapipe there
crashes it (segmentation fault; both carry LLVM). A device has no TensorFlow either.

    python tests/edge/litert_gpu_worker.py JOBS_JSON

JOBS_JSON: a list of {"path", "enforce_f32", "allow_partial", "seed"}. Output (last line of
stdout): a list of {"ok", "error_type", "error", "unsupported_ops", "fully_accelerated",
"accelerator_log", "psnr", "max_abs_diff", "shape", "gpu_seconds"} in the same order.
"""
import json
import sys
import time

for _name in ("tensorflow", "tf_keras", "keras"):
    sys.modules[_name] = None  # importing them now fails

import numpy as np  # noqa: E402

from keras_dehaze.edge import litert_gpu  # noqa: E402  (TensorFlow-free, as on a device)


def cpu_run(path, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, num_threads=2)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], x.astype(inp["dtype"]))
    it.invoke()
    return [it.get_tensor(o["index"]) for o in it.get_output_details()]


def job(spec):
    path = spec["path"]
    start = time.perf_counter()
    try:
        model = litert_gpu.compile_on_gpu(path, enforce_f32=spec.get("enforce_f32", True),
                                          allow_partial=spec.get("allow_partial", False),
                                          verbose=False)
    except (RuntimeError, ImportError) as e:
        return {"ok": False, "error_type": type(e).__name__, "error": str(e),
                "unsupported_ops": getattr(e, "unsupported_ops", None)}
    shape = model.inputs[0]["shape"]
    rng = np.random.default_rng(spec.get("seed", 0))
    x = rng.random(shape, dtype=np.float32)
    if len(shape) == 4 and shape[-1] == 3:  # a hazy-looking image: smooth scene + airlight
        t = np.linspace(0.4, 0.9, shape[1], dtype=np.float32)[None, :, None, None]
        x = np.clip(0.5 * x + 0.25, 0, 1) * t + 0.8 * (1 - t)
    gpu = model.run(x)[0]
    gpu_seconds = time.perf_counter() - start
    cpu = cpu_run(path, x)[0]
    diff = np.abs(gpu.astype(np.float64) - cpu.astype(np.float64))
    mse = float(np.mean(diff ** 2))
    return {"ok": True, "fully_accelerated": model.fully_accelerated,
            "accelerator_log": model.accelerator_log,
            "psnr": None if mse == 0 else 10.0 * np.log10(1.0 / mse),
            "max_abs_diff": float(diff.max()), "shape": list(gpu.shape),
            "finite": bool(np.all(np.isfinite(gpu))), "gpu_seconds": gpu_seconds}


def main(argv):
    jobs = json.loads(argv[1])
    print(json.dumps([job(spec) for spec in jobs]))


if __name__ == "__main__":
    main(sys.argv)
