"""Run a ``.tflite`` model on LiteRT's GPU accelerator (``CompiledModel``), numpy + ai_edge_litert only.

This module imports nothing but the standard library, numpy and (lazily) ``ai_edge_litert``: no
TensorFlow, so the on-device runner (``keras_dehaze.edge.runner``) uses it for
``--accelerator gpu``. ``GpuModel.run`` takes and returns the model's own tensor types; for int8
models, quantize and dequantize with ``keras_dehaze.edge.interpreter`` (``TFLiteDehazer`` does).

The GPU accelerator of ai-edge-litert 2.3.0 is ``libLiteRtWebGpuAccelerator.so`` (Dawn/WebGPU;
there is no OpenCL accelerator in the wheel). On Linux it needs a Vulkan driver: a real GPU's, or
Mesa's software rasteriser lavapipe from Mesa 25 on (Debian bookworm: ``mesa-vulkan-drivers``
from bookworm-backports plus ``libvulkan1``, with
``VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json``; ``.ci/install_vulkan.sh`` installs
them). Bookworm's stock Mesa 22.3 is rejected by Dawn ("No adapters found").

Usage::

    from keras_dehaze.edge.litert_gpu import compile_on_gpu
    model = compile_on_gpu("model_float32.tflite", enforce_f32=True)   # GPU only
    (out,) = model.run(x)              # x: float32 [1, H, W, 3]
    model.fully_accelerated            # True (else compile_on_gpu raised)
    model.accelerator_log              # e.g. "... Initializing WebGPU-based API from graph."

Errors (both ``RuntimeError`` subclasses):

* ``GpuUnavailableError``: no GPU adapter (no Vulkan driver, lavapipe too old or hidden), or no
  GPU accelerator library in the installed ai_edge_litert. The message names the problem and the
  fix.
* ``GpuPartialAccelerationError``: some operators of the model cannot run on the GPU (e.g.
  GATHER_ND); ``.unsupported_ops`` lists them. ``allow_partial=True`` runs those on the CPU
  instead (``HardwareAccelerator.GPU | CPU``) and only records ``fully_accelerated=False``.

The executed check (this module: compile and run on the accelerator) is the one that counts;
``edge/gpu_compat.py`` is a static estimate.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

import numpy as np

__all__ = [
    "GpuModel",
    "GpuUnavailableError",
    "GpuPartialAccelerationError",
    "compile_on_gpu",
    "run_on_gpu",
    "LAVAPIPE_ICD",
    "WEBGPU_LOG_LINE",
    "vulkan_setup_hint",
]

LAVAPIPE_ICD = "/usr/share/vulkan/icd.d/lvp_icd.json"
# Printed by the WebGPU accelerator when it takes the graph: evidence it ran on the accelerator.
WEBGPU_LOG_LINE = "Initializing WebGPU-based API from graph"

_NO_ADAPTER_PATTERNS = ("No adapters found", "Failed to initialize WebGPU environment",
                        "Failed to get or create delegate WebGPU environment")
_UNSUPPORTED_HEADER = "Following operations are not supported by GPU delegate"


class GpuUnavailableError(RuntimeError):
    """No usable GPU adapter or no GPU accelerator in the installed LiteRT."""


class GpuPartialAccelerationError(RuntimeError):
    """The model has operators the GPU accelerator does not take (``unsupported_ops``)."""

    def __init__(self, message, unsupported_ops=()):
        super().__init__(message)
        self.unsupported_ops = list(unsupported_ops)


def vulkan_setup_hint():
    """One paragraph: what the WebGPU accelerator needs on Linux and what this machine has."""
    icd = os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES")
    icd_dir = "/usr/share/vulkan/icd.d"
    found = sorted(os.listdir(icd_dir)) if os.path.isdir(icd_dir) else []
    if icd:
        missing = [p for p in icd.split(os.pathsep) if p and not os.path.isfile(p)]
        icd_text = f"VK_ICD_FILENAMES={icd}" + (f" (missing: {', '.join(missing)})" if missing else "")
    else:
        icd_text = "VK_ICD_FILENAMES is not set"
    return (f"LiteRT's GPU accelerator (WebGPU/Dawn) needs a Vulkan driver on Linux: a GPU's, or "
            f"Mesa's software driver lavapipe from Mesa 25 on (bookworm's Mesa 22.3 is rejected). "
            f"On Debian bookworm run .ci/install_vulkan.sh (mesa-vulkan-drivers from "
            f"bookworm-backports, libvulkan1, vulkan-tools) and export "
            f"VK_ICD_FILENAMES={LAVAPIPE_ICD}; `vulkaninfo --summary` lists the adapters. Here: "
            f"{icd_text}; Vulkan drivers in {icd_dir}: {', '.join(found) or 'none'}.")


@contextlib.contextmanager
def _capture_stderr_fd(echo=True):
    """Captures what native code writes to file descriptor 2 (LiteRT's and Dawn's logs).

    Yields a list that receives the captured text on exit; the text is written back to the
    original stderr when ``echo`` is true.
    """
    captured = []
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreters): nothing to capture
        yield captured
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            captured.append(text)
            if echo and text:
                os.write(2, text.encode("utf-8", "replace"))


def _unsupported_ops(log):
    """Operator names from LiteRT's "Following operations are not supported by GPU delegate:" block."""
    ops = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if _UNSUPPORTED_HEADER in line:
            for follow in lines[i + 1:]:
                m = re.match(r"^\s*([A-Z][A-Z0-9_]*):\s", follow)
                if not m:
                    break
                if m.group(1) not in ops:
                    ops.append(m.group(1))
    return ops


def _accelerator_lines(log):
    return [line.strip() for line in log.splitlines() if WEBGPU_LOG_LINE in line]


def _np_dtype(name):
    return np.dtype(str(name).replace("kLiteRtElementType", "").lower())


class GpuModel:
    """A ``.tflite`` compiled for LiteRT's GPU accelerator (use ``compile_on_gpu``).

    Attributes:
        path, enforce_f32, allow_partial: as given to ``compile_on_gpu``.
        fully_accelerated: ``CompiledModel.is_fully_accelerated()``.
        inputs / outputs: lists of dicts (name, dtype (numpy), shape) in signature order.
        compile_log: what LiteRT/Dawn printed while compiling.
        accelerator_log: the log lines showing the WebGPU accelerator took the graph
            ("Initializing WebGPU-based API from graph."); empty if LiteRT logged nothing.
    """

    def __init__(self, compiled, path, enforce_f32, allow_partial, compile_log):
        self._model = compiled
        self.path = path
        self.enforce_f32 = enforce_f32
        self.allow_partial = allow_partial
        self.compile_log = compile_log
        self.accelerator_log = _accelerator_lines(compile_log)
        self.fully_accelerated = bool(compiled.is_fully_accelerated())
        signatures = compiled.get_signature_list()
        self.signature = next(iter(signatures))
        names = signatures[self.signature]
        in_details = compiled.get_input_tensor_details(self.signature)
        out_details = compiled.get_output_tensor_details(self.signature)
        self.inputs = [self._detail(n, in_details[n]) for n in names["inputs"]]
        self.outputs = [self._detail(n, out_details[n]) for n in names["outputs"]]
        self._in_buffers = compiled.create_input_buffers(0)
        self._out_buffers = compiled.create_output_buffers(0)

    @staticmethod
    def _detail(name, d):
        return {"name": name, "dtype": _np_dtype(d["dtype"]),
                "shape": tuple(int(v) for v in d["shape"])}

    def run(self, *arrays):
        """Runs the model once. Inputs in signature order (dtype and shape must match);
        returns the outputs as numpy arrays in signature order."""
        if len(arrays) != len(self.inputs):
            raise ValueError(f"{self.path}: the model has {len(self.inputs)} input(s), "
                             f"got {len(arrays)}")
        for array, spec, buffer in zip(arrays, self.inputs, self._in_buffers):
            array = np.asarray(array)
            if tuple(array.shape) != spec["shape"]:
                raise ValueError(f"{self.path}: input {spec['name']!r} needs shape "
                                 f"{list(spec['shape'])}, got {list(array.shape)}")
            buffer.write(np.ascontiguousarray(array, dtype=spec["dtype"]))
        self._model.run_by_index(0, self._in_buffers, self._out_buffers)
        return [buffer.read(int(np.prod(spec["shape"])), spec["dtype"]).reshape(spec["shape"])
                for spec, buffer in zip(self.outputs, self._out_buffers)]

    __call__ = run

    def __repr__(self):
        return (f"GpuModel({self.path!r}, enforce_f32={self.enforce_f32}, "
                f"fully_accelerated={self.fully_accelerated})")


def compile_on_gpu(model_path, enforce_f32=True, allow_partial=False, verbose=True):
    """Compiles a ``.tflite`` for LiteRT's GPU accelerator; returns a :class:`GpuModel`.

    Args:
        model_path: the ``.tflite`` file.
        enforce_f32: ``GpuOptions(enforce_f32=...)``: compute in float32 (True) or let the
            accelerator use float16 (False, its default precision; ~50-60 dB vs the CPU).
        allow_partial: False (default): GPU only; a model with operators the accelerator does
            not take raises :class:`GpuPartialAccelerationError`. True: GPU with CPU fallback
            for those operators (``fully_accelerated`` tells whether any fell back).
        verbose: echo LiteRT's log to stderr (it is always kept in ``compile_log``).

    Raises:
        GpuUnavailableError: no GPU adapter / accelerator (the message says what to install).
        GpuPartialAccelerationError: partial acceleration and ``allow_partial`` is False.
        FileNotFoundError, ImportError, RuntimeError: missing file, no ai_edge_litert, other
            LiteRT failures.
    """
    model_path = os.fspath(model_path)
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"{model_path}: model file not found")
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import GpuOptions, Options
    except ImportError as e:
        raise ImportError(f"the GPU accelerator needs ai-edge-litert >= 2.x with CompiledModel "
                          f"('pip install ai-edge-litert'): {e}") from e
    accelerators = HardwareAccelerator.GPU
    if allow_partial:
        accelerators = HardwareAccelerator.GPU | HardwareAccelerator.CPU
    options = Options(hardware_accelerators=accelerators,
                      gpu_options=GpuOptions(enforce_f32=bool(enforce_f32)))
    compiled, error = None, None
    with _capture_stderr_fd(echo=verbose) as captured:
        try:
            compiled = CompiledModel.from_file(model_path, options=options)
        except RuntimeError as e:
            error = e
    log = captured[0] if captured else ""
    if error is not None:
        _raise_compile_error(model_path, error, log)
    model = GpuModel(compiled, model_path, bool(enforce_f32), bool(allow_partial), log)
    if not model.fully_accelerated and not allow_partial:  # GPU-only normally fails earlier
        ops = _unsupported_ops(log)
        raise GpuPartialAccelerationError(
            f"{model_path}: not fully accelerated on the GPU"
            f"{' (unsupported: ' + ', '.join(ops) + ')' if ops else ''}; pass allow_partial=True "
            f"(--gpu-allow-partial) to run the rest on the CPU", ops)
    return model


def _raise_compile_error(model_path, error, log):
    text = f"{error}\n{log}"
    if any(p in text for p in _NO_ADAPTER_PATTERNS):
        loader = [line.strip() for line in log.splitlines()
                  if line.startswith("Warning:") or "vkCreateInstance" in line]
        detail = f" Vulkan loader: {' | '.join(loader)}." if loader else ""
        raise GpuUnavailableError(
            f"{model_path}: no GPU adapter found (Dawn: 'No adapters found').{detail} "
            f"{vulkan_setup_hint()}") from error
    registered = [line for line in log.splitlines() if "RegisterAccelerator" in line]
    if registered and not any("GPU" in line for line in registered):
        raise GpuUnavailableError(
            f"{model_path}: the installed ai_edge_litert has no loadable GPU accelerator "
            f"(libLiteRtWebGpuAccelerator.so). LiteRT said: {str(error).strip()}") from error
    ops = _unsupported_ops(log)
    if ops or "Some ops are not accelerated" in text:
        raise GpuPartialAccelerationError(
            f"{model_path}: operators not supported by the GPU accelerator: "
            f"{', '.join(ops) or '(see the log above)'}; refusing partial acceleration (pass "
            f"allow_partial=True / --gpu-allow-partial to run them on the CPU)", ops) from error
    raise RuntimeError(f"{model_path}: LiteRT could not compile the model for the GPU: "
                       f"{str(error).strip()}") from error


def run_on_gpu(model_path, *arrays, enforce_f32=True, allow_partial=False, verbose=True):
    """Compiles ``model_path`` on the GPU accelerator and runs it once; returns the outputs."""
    return compile_on_gpu(model_path, enforce_f32=enforce_f32, allow_partial=allow_partial,
                          verbose=verbose).run(*arrays)
