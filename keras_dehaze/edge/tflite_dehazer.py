#!/usr/bin/env python3
"""Dehaze images on a device with a ``.tflite`` model: no TensorFlow, no ``keras_dehaze`` package.

This file is self-contained (numpy, cv2, a TFLite interpreter, and ``tiling.py`` loaded by file
path), so it runs where neither TensorFlow nor the package is installed. ``edge/infer.py``
launches it; the package's ``keras-dehaze dehaze --model x.tflite`` imports its classes.

Usage::

    python edge/infer.py --model model.tflite INPUT... -o OUTDIR [--threads N] [--tile-overlap 32]
                         [--max-megapixels MP] [--no-resize]
                         [--accelerator cpu|gpu] [--gpu-precision fp32|default]

INPUT may be image files, folders (their images; ``--recursive`` for sub-folders) or glob
patterns (quote them: ``"photos/*.jpg"``). Each result is written as ``OUTDIR/<stem>_dehazed.png``
(8-bit, or 16-bit for 16-bit/float inputs; ``--bit-depth`` overrides). Inputs are never
overwritten: a file whose output path would be one of the inputs is refused. An unreadable or
truncated file is reported and skipped, the others are processed, and the exit code is 1 if any
file failed (2 for a setup error: no interpreter, bad model, no input found).

Any image size works. A ``.tflite`` normally has a fixed input size (e.g. 1x256x256x3). A graph
converted at a size that is a multiple of 4 has no pad/crop ops, so the interpreter can be resized
(``resize_tensor_input`` + ``allocate_tensors``) and computes at any multiple of 4 what a
conversion at that size computes: the image is padded to a multiple of ``--multiple`` (reflect)
and run whole if it fits the pixel budget (``--max-megapixels``: about 1 GB peak memory), else in
the fewest equal tiles the budget allows, overlapping by ``--tile-overlap`` and blended with a
smooth window, so no seams are visible (see ``keras_dehaze/tiling.py``). Graphs with shapes baked
in (the int8 AE-CR-Net's deformable-conv sampling grid) refuse the resize; they, and every model
with ``--no-resize`` or on the GPU, run in tiles of their own size (images smaller than it are
padded up). Models with a dynamic input size are treated like resizable ones (``--tile HxW``
forces a tile size). float32, int8 and uint8 model inputs/outputs are handled using the
quantization scale and zero point stored in the model.

Dependencies: numpy, opencv (cv2) and a TFLite interpreter: ``ai_edge_litert`` (preferred;
``ai_edge_litert.interpreter.Interpreter``) or the older ``tflite_runtime``.

``--accelerator gpu`` runs the model on LiteRT's GPU accelerator (``CompiledModel``, WebGPU;
needs ai_edge_litert 2.x and ``litert_gpu.py``, loaded by file path like ``tiling.py``). It needs
a fixed-size model; a model with operators the GPU does not take (e.g. the int8 AE-CR-Net's
TRANSPOSE_CONV, GATHER_ND) is refused unless ``--gpu-allow-partial``. On Linux the accelerator
needs a Vulkan driver (a GPU's, or Mesa >= 25's software lavapipe: docs/deployment.md).

To deploy on a Raspberry Pi (64-bit Raspberry Pi OS) or any other device: copy
``keras_dehaze/edge_runner.py`` and ``keras_dehaze/tiling.py`` (and ``keras_dehaze/litert_gpu.py``
for ``--accelerator gpu``) into one folder, then::

    pip install ai-edge-litert numpy opencv-python-headless
    python edge_runner.py --model model_int8.tflite photos/ -o dehazed/ --threads 4

``tiling.py`` is loaded by file path from this file's own folder, so the ``keras_dehaze``
package (and with it TensorFlow) is never imported.

Python API::

    from edge_runner import TFLiteDehazer, read_image, write_image   # its folder on sys.path
    d = TFLiteDehazer("model.tflite", threads=2)
    g = TFLiteDehazer("model_float32.tflite", accelerator="gpu", gpu_precision="fp32")
    d.input_size, d.input_dtype          # (256, 256), dtype('int8')
    image, bit_depth = read_image("hazy.jpg")   # float32 RGB in [0, 1]
    out = d.dehaze(image)                        # float32 RGB in [0, 1], same size
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import sys
import time
import uuid

import cv2
import numpy as np

__all__ = [
    "TFLiteDehazer",
    "ImageReadError",
    "read_image",
    "read_image_raw",
    "to_float_rgb",
    "write_image",
    "load_interpreter_class",
    "load_tiling_module",
    "load_gpu_module",
    "ACCELERATORS",
    "GPU_PRECISIONS",
    "collect_inputs",
    "output_paths",
    "main",
]

DEFAULT_TILE_OVERLAP = 32
# Pixel budget of one interpreter run for models run at the image's size (dynamic models and
# fixed-size models that can be resized): an image that fits runs whole, a larger one in tiles
# as large as the budget. Peak RSS grows ~linearly with the pixels of one run; measured with
# /usr/bin/time -v for LKD-Net-S (the heaviest resizable bundled network): int8 about
# 0.1 GB + 2.7 GB per megapixel, float32 about 0.1 GB + 3.7 GB per megapixel. These budgets
# keep the whole process (model, photo, result, PNG encoder) under 1 GB on any photo size.
DEFAULT_MAX_PIXELS = {"int": 512 * 512, "float": 448 * 448}
# A fixed-size model resized to a smaller image is run at least at min(its own size, this) per
# side (tiny images are padded up): some networks need a minimum size (LKD-Net: 40 pixels).
MIN_RUN_SIDE = 64
# Overlap of resized tiles (budget tiles of a resizable model): wider than the fixed tiles' 32,
# because networks with global statistics (LKD-Net's ImageLayerNorm over the whole feature map,
# global average pooling) give each tile its own brightness/contrast offset; the blend spreads
# that step over the middle half of the overlap (48 px here instead of 16), which keeps it from
# showing as a line in flat areas (sky, fog).
DEFAULT_RESIZED_TILE_OVERLAP = 96
ACCELERATORS = ("cpu", "gpu")
# --gpu-precision: fp32 = GpuOptions(enforce_f32=True); default = the accelerator's own choice
# (float16 arithmetic on most GPUs, ~50-60 dB from the CPU result).
GPU_PRECISIONS = ("fp32", "default")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                    ".pnm")


# --------------------------------------------------------------------------- tiling (by path)

_TILING_MODULE_NAME = "_keras_dehaze_edge_tiling"
_GPU_MODULE_NAME = "_keras_dehaze_edge_litert_gpu"


def _sibling_candidates(filename):
    here = os.path.dirname(os.path.abspath(__file__))
    real = os.path.dirname(os.path.realpath(__file__))
    seen = []
    for folder in (here, real):
        path = os.path.normpath(os.path.join(folder, filename))
        if path not in seen:
            seen.append(path)
    return seen


def _tiling_candidates():
    return _sibling_candidates("tiling.py")


def _load_sibling(filename, module_name):
    """Loads a numpy-only helper module of ``keras_dehaze/`` by file path (the package is not
    imported), from this file's folder (``keras_dehaze/`` in the repository, or the folder the
    files were copied to on a device)."""
    module = sys.modules.get(module_name)
    if module is not None:
        return module
    candidates = _sibling_candidates(filename)
    for path in candidates:
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
            return module
    raise ImportError(f"{filename} not found; looked for " + ", ".join(candidates) +
                      f". Copy keras_dehaze/{filename} next to edge_runner.py.")


def load_tiling_module():
    """Loads the numpy-only ``keras_dehaze/tiling.py`` by file path (the package is not imported).

    Looks in this file's folder (``keras_dehaze/`` in the repository, or the folder both files
    were copied to on a device).
    """
    return _load_sibling("tiling.py", _TILING_MODULE_NAME)


def load_gpu_module():
    """Loads ``keras_dehaze/litert_gpu.py`` (numpy + ai_edge_litert only) by file path: LiteRT's
    GPU accelerator through ``CompiledModel``. Needed only for ``accelerator="gpu"``.

    When the ``keras_dehaze`` package is already imported (the package's CLI), its
    ``keras_dehaze.litert_gpu`` is used instead, so that ``except
    keras_dehaze.litert_gpu.GpuUnavailableError`` catches what this runner raises."""
    if sys.modules.get("keras_dehaze") is not None:
        try:
            import keras_dehaze.litert_gpu as package_module
            return package_module
        except ImportError:
            pass
    return _load_sibling("litert_gpu.py", _GPU_MODULE_NAME)


# --------------------------------------------------------------------------- interpreter

def load_interpreter_class():
    """Returns ``(Interpreter class, backend name)``: ai_edge_litert, else tflite_runtime."""
    problems = []
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai_edge_litert"
    except ImportError as e:
        problems.append(f"ai_edge_litert: {e}")
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite_runtime"
    except ImportError as e:
        problems.append(f"tflite_runtime: {e}")
    raise ImportError("No TFLite interpreter is installed. Install one with "
                      "'pip install ai-edge-litert' (or the older 'tflite-runtime'). "
                      "Import errors: " + "; ".join(problems))


def _quant_params(detail):
    """(scale, zero_point) of a per-tensor quantized tensor; (0.0, 0) if not quantized."""
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64).ravel()
    zps = np.asarray(params.get("zero_points", []), dtype=np.int64).ravel()
    if scales.size > 1:
        if not (np.all(scales == scales[0]) and np.all(zps == zps[0])):
            raise ValueError(f"tensor {detail.get('name')!r} is quantized per channel; "
                             f"only per-tensor quantized model inputs/outputs are supported")
    if scales.size >= 1:
        return float(scales[0]), int(zps[0]) if zps.size else 0
    scale, zp = detail.get("quantization", (0.0, 0))
    return float(scale), int(zp)


class TFLiteDehazer:
    """A ``.tflite`` dehazing model: float RGB [0, 1] image of any size in, same size out.

    Args:
        model_path: path to the ``.tflite`` file (input [1, H, W, 3] RGB in [0, 1], output
            the same shape; float32, int8 or uint8 tensors).
        threads: interpreter threads (None: ``os.cpu_count()``).
        tile_overlap: minimum overlap between tiles, in pixels (None: for tiles of the model's
            own size 32, or a quarter of the tile side for tiles smaller than 128; for tiles of a
            resized model ``DEFAULT_RESIZED_TILE_OVERLAP``, 96).
        multiple: the network's down-sampling factor: dynamic-size models are padded to a
            multiple of it; tiles are aligned to it (when the model size is a multiple of it).
        tile: (h, w) tile size for models run at the image's size (None: the whole padded image
            if it fits ``max_pixels``, else tiles as large as ``max_pixels`` allows).
        resize: run a fixed-size model at other sizes (``resize_tensor_input`` +
            ``allocate_tensors``): True (default) tries it on the first image and falls back to
            tiles of the model's own size if the graph refuses (shapes baked into the graph, e.g.
            the int8 AE-CR-Net's deformable-conv sampling grid); False always tiles at the model's
            size. A graph converted at a size that is a multiple of ``multiple`` has no pad/crop
            ops, so it computes at any multiple of it what a conversion at that size computes.
            Off on the GPU (the compiled model has one size).
        max_pixels: pixel budget of one interpreter run for resized/dynamic models (None:
            ``DEFAULT_MAX_PIXELS`` for the model's input type, about 1 GB peak RSS for LKD-Net).
        accelerator: "cpu" (default: the TFLite interpreter, XNNPACK) or "gpu": LiteRT's GPU
            accelerator through ``CompiledModel`` (``litert_gpu.py``, loaded by file path; needs
            a fixed-size model and, on Linux, a Vulkan driver, e.g. Mesa 25's lavapipe).
        gpu_precision: "fp32" (default; ``GpuOptions(enforce_f32=True)``, matches the CPU to
            ~140 dB) or "default" (the accelerator's choice, float16 arithmetic, ~50-60 dB).
        gpu_allow_partial: with "gpu": run operators the GPU does not take on the CPU instead
            of refusing the model (``GpuPartialAccelerationError``).

    Raises (besides the model errors): ``litert_gpu.GpuUnavailableError`` (no GPU adapter) and
    ``litert_gpu.GpuPartialAccelerationError``, both ``RuntimeError``, for ``accelerator="gpu"``.

    Attributes:
        input_size: (H, W) of a fixed-size model, None if the model's size is dynamic.
        input_dtype / output_dtype: numpy dtypes of the model's input/output tensors.
        backend: "ai_edge_litert" or "tflite_runtime".
        last_tiles: number of interpreter runs of the last ``dehaze`` call.
        last_plan: how the last image was run: ``("whole", (h, w))`` (one run at the padded
            image size), ``("tiles", (th, tw))`` (resized tiles) or ``("fixed", (th, tw))`` (tiles
            of the model's own size).
        resizable: None until a resize was tried, then whether the model runs at other sizes.
        accelerator: "cpu" or "gpu".
        gpu_model: the ``litert_gpu.GpuModel`` (None on the CPU); ``gpu_model.fully_accelerated``
            and ``gpu_model.accelerator_log`` show what ran on the accelerator.
    """

    def __init__(self, model_path, threads=None, tile_overlap=None, multiple=4, tile=None,
                 accelerator="cpu", gpu_precision="fp32", gpu_allow_partial=False, resize=True,
                 max_pixels=None):
        model_path = os.fspath(model_path)
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"{model_path}: model file not found")
        self.accelerator = str(accelerator).lower()
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"accelerator must be one of {ACCELERATORS}, got {accelerator!r}")
        if gpu_precision not in GPU_PRECISIONS:
            raise ValueError(f"gpu_precision must be one of {GPU_PRECISIONS}, got {gpu_precision!r}")
        self.gpu_precision = gpu_precision
        self.gpu_model = None
        self.tiling = load_tiling_module()
        interpreter_class, self.backend = load_interpreter_class()
        self.threads = int(threads) if threads else (os.cpu_count() or 1)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.model_path = model_path
        self.multiple = int(multiple)
        self.tile = None if tile is None else tuple(int(v) for v in tile)
        self.xnnpack_error = None
        self.resize_error = None
        try:
            self._interpreter = interpreter_class(model_path=model_path,
                                                  num_threads=self.threads)
            if self.accelerator == "cpu":  # on the GPU the interpreter only describes the model
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            # The default XNNPACK CPU delegate refuses some int8 graphs (e.g. a scale outside
            # its limits) at allocate_tensors; the builtin kernels still run them (slower).
            resolver = _builtin_resolver(interpreter_class)
            if resolver is None or "delegate" not in str(e).lower():
                raise ValueError(f"{model_path}: cannot load the TFLite model ({e})") from e
            try:
                self._interpreter = interpreter_class(model_path=model_path, num_threads=self.threads,
                                                      experimental_op_resolver_type=resolver)
                self._interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as e2:
                raise ValueError(f"{model_path}: cannot load the TFLite model ({e2})") from e2
            self.xnnpack_error = str(e).strip()
            print(f"warning: {model_path}: the XNNPACK delegate refused the model; running it with "
                  f"the builtin kernels (slower). ({self.xnnpack_error})", file=sys.stderr)
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ValueError(f"{model_path}: expected a model with one image input and an image "
                             f"output, got {len(inputs)} inputs and {len(outputs)} outputs")
        self._in = inputs[0]
        shape = [int(v) for v in self._in["shape"]]
        # Multi-output models (e.g. a network that also returns intermediate scales): use the
        # output with the input's shape; TFLite does not keep the Keras output order reliably.
        same = [o for o in outputs if [int(v) for v in o["shape"]] == shape]
        self._out = same[0] if same else outputs[0]
        out_shape = [int(v) for v in self._out["shape"]]
        if len(out_shape) != 4 or out_shape[3] != 3:
            raise ValueError(f"{model_path}: expected an output of shape [1, H, W, 3] (RGB), "
                             f"got {out_shape}")
        signature = [int(v) for v in self._in.get("shape_signature", self._in["shape"])]
        if len(shape) != 4 or shape[3] != 3:
            raise ValueError(f"{model_path}: expected an input of shape [1, H, W, 3] (RGB), "
                             f"got {shape}")
        if signature[0] not in (1, -1):
            raise ValueError(f"{model_path}: the input batch size is {signature[0]}; "
                             f"only batch size 1 models are supported")
        self.dynamic = signature[1] < 0 or signature[2] < 0
        self.input_size = None if self.dynamic else (shape[1], shape[2])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self._check_dtype(self.input_dtype, "input")
        self._check_dtype(self.output_dtype, "output")
        self._in_quant = _quant_params(self._in)
        self._out_quant = _quant_params(self._out)
        if self.input_dtype.kind in "iu" and self._in_quant[0] == 0:
            raise ValueError(f"{model_path}: integer input without quantization parameters")
        self._current_shape = tuple(shape)
        self._native_shape = tuple(shape)
        self.last_tiles = 0
        self.last_plan = None
        # Resizing a fixed-size model: tried lazily on the first image (None: not tried yet).
        self.resize = bool(resize) and self.accelerator == "cpu" and not self.dynamic
        self.resizable = True if self.dynamic else (None if self.resize else False)
        if max_pixels is None:
            max_pixels = DEFAULT_MAX_PIXELS["int" if self.input_dtype.kind in "iu" else "float"]
        self.max_pixels = int(max_pixels)
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        tile_size = self.input_size or self.tile
        self.resized_overlap = int(DEFAULT_RESIZED_TILE_OVERLAP if tile_overlap is None
                                   else tile_overlap)
        if tile_overlap is None:
            tile_overlap = DEFAULT_TILE_OVERLAP
            if tile_size is not None:
                tile_overlap = min(tile_overlap, min(tile_size) // 4)
        self.tile_overlap = int(tile_overlap)
        if self.multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {self.multiple}")
        # Tile starts are aligned to the network's down-sampling grid when the tile allows it.
        self._align = 1
        if tile_size is not None and all(t % self.multiple == 0 for t in tile_size):
            self._align = self.multiple
        elif self.dynamic and tile_size is not None:
            raise ValueError(f"--tile {tile_size[0]}x{tile_size[1]} must be a multiple of "
                             f"{self.multiple} (--multiple)")
        if self.tile_overlap < 0 or (tile_size is not None and
                                     self.tile_overlap > min(tile_size) - self._align):
            limit = ("" if tile_size is None else
                     f" and at most {min(tile_size) - self._align} for tiles of {tile_size}")
            raise ValueError(f"tile overlap {self.tile_overlap} must be >= 0{limit}")
        if self.accelerator == "gpu":
            self._init_gpu(gpu_allow_partial)

    def _init_gpu(self, allow_partial):
        if self.dynamic:
            raise ValueError(f"{self.model_path}: the GPU accelerator needs a model with a fixed "
                             f"input size; this one is dynamic (convert it at a fixed size)")
        gpu = load_gpu_module()
        self.gpu_model = gpu.compile_on_gpu(self.model_path,
                                            enforce_f32=self.gpu_precision == "fp32",
                                            allow_partial=allow_partial)
        shape = tuple(self._current_shape)
        if len(self.gpu_model.inputs) != 1 or self.gpu_model.inputs[0]["shape"] != shape:
            raise ValueError(f"{self.model_path}: the GPU-compiled model's inputs "
                             f"{[i['shape'] for i in self.gpu_model.inputs]} differ from the "
                             f"interpreter's {shape}")
        out_shape = tuple(int(v) for v in self._out["shape"])
        shapes = [o["shape"] for o in self.gpu_model.outputs]
        if out_shape not in shapes:
            raise ValueError(f"{self.model_path}: no GPU output of shape {out_shape} ({shapes})")
        self._gpu_out_index = shapes.index(out_shape)

    def _check_dtype(self, dtype, what):
        if dtype not in (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.int8),
                         np.dtype(np.uint8)):
            raise ValueError(f"{self.model_path}: unsupported {what} type {dtype} "
                             f"(supported: float32, float16, int8, uint8)")

    def __repr__(self):
        size = "dynamic" if self.dynamic else f"{self.input_size[0]}x{self.input_size[1]}"
        where = f"threads={self.threads}, backend={self.backend}"
        if self.gpu_model is not None:
            where = (f"accelerator=gpu (LiteRT WebGPU, precision {self.gpu_precision}, "
                     f"fully accelerated={self.gpu_model.fully_accelerated})")
        return (f"TFLiteDehazer({self.model_path!r}, input={size} {self.input_dtype}, "
                f"output={self.output_dtype}, {where})")

    # -- tensors
    def _quantize(self, batch):
        dtype = self.input_dtype
        if dtype.kind == "f":
            return batch.astype(dtype, copy=False)
        scale, zp = self._in_quant
        info = np.iinfo(dtype)
        q = np.round(batch / np.float32(scale)) + np.float32(zp)
        return np.clip(q, info.min, info.max).astype(dtype)

    def _dequantize(self, result):
        if self.output_dtype.kind == "f":
            return result.astype(np.float32, copy=False)
        scale, zp = self._out_quant
        if scale == 0:
            raise ValueError(f"{self.model_path}: integer output without quantization parameters")
        return (result.astype(np.float32) - np.float32(zp)) * np.float32(scale)

    def _ensure_shape(self, shape):
        shape = tuple(int(v) for v in shape)
        if shape != self._current_shape:
            self._interpreter.resize_tensor_input(self._in["index"], list(shape),
                                                  strict=self.dynamic)
            self._interpreter.allocate_tensors()
            self._current_shape = shape

    def _try_resize(self, shape):
        """Resizes a fixed-size model to ``shape``; False (model back at its own size, never
        tried again) if the graph refuses it or its output would not have the input's size."""
        if self.resizable is False:
            return False
        try:
            self._ensure_shape(shape)
            out = [d for d in self._interpreter.get_output_details()
                   if d["index"] == self._out["index"]][0]
            if [int(v) for v in out["shape"][1:3]] != list(shape[1:3]):
                raise ValueError(f"output shape {list(out['shape'])} for input {list(shape)}")
        except (ValueError, RuntimeError) as e:
            if self.dynamic:
                raise
            self.resize_error = str(e).strip()
            self.resizable = False
            self._interpreter.resize_tensor_input(self._in["index"], list(self._native_shape),
                                                  strict=False)
            self._interpreter.allocate_tensors()
            self._current_shape = self._native_shape
            return False
        self.resizable = True
        return True

    def run(self, batch):
        """One interpreter call: float32 [1, h, w, 3] in [0, 1] -> float32 [1, h, w, C]."""
        batch = np.asarray(batch, dtype=np.float32)
        if tuple(batch.shape) != self._current_shape:
            if not (self.dynamic or self.resizable):
                raise ValueError(f"the model needs input shape {list(self._current_shape)}, "
                                 f"got {list(batch.shape)}")
            self._ensure_shape(batch.shape)
        if self.gpu_model is not None:
            result = self.gpu_model.run(self._quantize(batch))[self._gpu_out_index]
            self.last_tiles += 1
            return self._dequantize(result)
        self._interpreter.set_tensor(self._in["index"], self._quantize(batch))
        self._interpreter.invoke()
        self.last_tiles += 1
        return self._dequantize(self._interpreter.get_tensor(self._out["index"]))

    # -- planning
    def _round_up(self, n):
        m = self.multiple
        return -(-int(n) // m) * m

    def _min_run_size(self):
        """Smallest run size per side: a resized fixed-size model is not run below
        min(its own size, MIN_RUN_SIDE) (tiny images are padded up), a dynamic one below
        ``multiple``."""
        if self.dynamic:
            return self.multiple, self.multiple
        return tuple(self._round_up(min(side, MIN_RUN_SIDE)) for side in self._native_shape[1:3])

    def plan(self, height, width):
        """How an image of ``height`` x ``width`` is run, without running it:
        ``("whole", (h, w))``, ``("tiles", (th, tw))`` or ``("fixed", (th, tw))`` (see
        ``last_plan``). Whole when the padded image fits ``max_pixels``; otherwise the fewest
        tiles of at most ``max_pixels`` (every tile the same size, so the interpreter is
        resized once per image size), overlapping by ``resized_overlap``."""
        if not (self.dynamic or self.resize) or self.resizable is False:
            return "fixed", tuple(self.input_size)
        if self.tile is not None:
            return "tiles", tuple(self.tile)
        min_h, min_w = self._min_run_size()
        h, w = max(self._round_up(height), min_h), max(self._round_up(width), min_w)
        if h * w <= self.max_pixels:
            return "whole", (h, w)
        return "tiles", self._budget_tile(int(height), int(width), min_h, min_w)

    def overlap(self, mode):
        """Tile overlap of a plan's mode: ``tile_overlap`` for tiles of the model's own size
        ("fixed"), ``resized_overlap`` for tiles of a resized or dynamic model ("tiles")."""
        return self.resized_overlap if mode == "tiles" else self.tile_overlap

    def prepare(self, height, width):
        """``plan(height, width)``, after trying (once, on the first image) whether a
        fixed-size model can be resized; the interpreter is left at the size of the first run."""
        mode, size = self.plan(height, width)
        if mode != "fixed" and not self.dynamic and self.resizable is None:
            if not self._try_resize((1, size[0], size[1], self._native_shape[3])):
                mode, size = self.plan(height, width)  # the model's own size after all
        return mode, size

    def _budget_tile(self, height, width, min_h, min_w):
        m, ov, budget = self.multiple, self.resized_overlap, self.max_pixels
        tile_starts = self.tiling.tile_starts

        def smallest(length, count, low):
            """The smallest tile (multiple of m, >= low) covering ``length`` in ``count`` tiles."""
            if count == 1:
                return max(self._round_up(length), low)
            t = max(self._round_up(-(-(length + (count - 1) * ov) // count)), low, ov + m)
            while len(tile_starts(length, t, ov, m)) > count:
                t += m
            return t

        low_h, low_w = max(min_h, ov + m), max(min_w, ov + m)  # the smallest usable tiles
        most_rows = len(tile_starts(height, low_h, ov, m))
        best = None
        for ny in range(1, most_rows + 1):
            if best is not None and ny > best[0][0]:
                break  # more rows than the best total: cannot improve
            th = smallest(height, ny, low_h)
            tw_max = (budget // th) // m * m
            if tw_max < low_w:
                continue  # rows this tall leave no tile width within the budget
            nx = len(tile_starts(width, tw_max, ov, m))
            tw = smallest(width, nx, low_w)
            key = (ny * nx, th * tw)
            if best is None or key < best[0]:
                best = (key, (th, tw))
        if best is None:
            raise ValueError(f"max_pixels {budget} is too small for tiles overlapping by {ov} "
                             f"pixels (at least {(ov + m) * (ov + m)})")
        return best[1]

    def dehaze(self, image, dtype=np.float32):
        """Dehazes an RGB image (H, W, 3) of any size: float in [0, 1], or uint8 / uint16
        (scaled to [0, 1] tile by tile). Returns float32 (H, W, 3) clipped to [0, 1]; with
        ``dtype=np.uint8`` / ``np.uint16``, the pixels ``round(clip(x, 0, 1) * 255)`` (65535),
        written row band by row band when tiled (no full-size float array: for a 12000x9000
        photo 324 MB instead of 1.3 GB).

        Fixed-size models are resized to the image (see ``resize``) when the graph allows it:
        the whole image in one run if it fits ``max_pixels``, else the fewest tiles the budget
        allows; models that cannot be resized run in tiles of their own size."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.uint8), np.dtype(np.uint16)):
            raise ValueError(f"dtype must be float32, uint8 or uint16, got {dtype}")
        self.last_tiles = 0
        mode, size = self.last_plan = self.prepare(*image.shape[:2])
        if mode == "fixed":
            out = self.tiling.dehaze_tiled(image, self.run, size, overlap=self.tile_overlap,
                                           multiple=self._align, out_dtype=dtype)
        elif mode == "tiles":
            out = self.tiling.dehaze_tiled(image, self.run, size, overlap=self.overlap(mode),
                                           multiple=self.multiple, out_dtype=dtype)
        else:
            h, w = image.shape[:2]
            padded = self.tiling.pad_to_size(self.tiling._to_float32(image), size)
            out = self.run(np.ascontiguousarray(padded)[None])[0, :h, :w]
            del padded
            if dtype != np.float32:
                scale = 255.0 if dtype == np.uint8 else 65535.0
                np.clip(out, 0.0, 1.0, out=out)
                out *= np.float32(scale)
                return np.round(out, out=out).astype(dtype)
            out = np.ascontiguousarray(out)
        if dtype == np.float32:
            np.clip(out, 0.0, 1.0, out=out)
        return out

    __call__ = dehaze  # the same interface as keras_dehaze.inference's dehazers

    @property
    def name(self):
        return os.path.basename(self.model_path)


def _builtin_resolver(interpreter_class):
    """The "builtin kernels, no default delegates" op resolver of the interpreter's package."""
    try:
        module = sys.modules[interpreter_class.__module__]
        return module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    except (KeyError, AttributeError):
        return None


# --------------------------------------------------------------------------- image I/O
# Same rules as keras_dehaze/data/image_io.py (kept self-contained so that only this file and
# tiling.py are needed on a device).

class ImageReadError(ValueError):
    """An input image is missing, empty, not an image, truncated or in an unsupported format."""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def read_image_raw(path):
    """Reads an image as an RGB array (H, W, 3) in its stored depth; returns ``(rgb, bit_depth)``.

    ``rgb`` is uint8, uint16 or float32 (floats clipped to [0, 1]) and may be a view
    (channel-reversed, or a broadcast gray image): no full-size float copy is made, which keeps
    the memory of huge photos low (``TFLiteDehazer.dehaze`` scales integer images per tile).
    Gray is replicated to RGB, alpha dropped. JPEGs get their EXIF orientation applied.
    Truncated JPEG/PNG files (which OpenCV may decode partially with only a warning) and
    undecodable files raise ``ImageReadError`` naming the file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ImageReadError(f"{path}: is a directory, not an image file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read the file ({e.strerror or e})") from e
    if not data:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    if data.startswith(_JPEG_SIGNATURE):
        if not data[-65536:].rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise ImageReadError(f"{path}: truncated JPEG (no end-of-image marker; "
                                 f"{len(data)} bytes), probably an incomplete copy")
        flags = cv2.IMREAD_COLOR  # applies EXIF orientation, converts CMYK
    else:
        if data.startswith(_PNG_SIGNATURE) and data.rfind(_PNG_IEND) < 0:
            raise ImageReadError(f"{path}: truncated PNG (no IEND chunk; {len(data)} bytes), "
                                 f"probably an incomplete copy")
        flags = cv2.IMREAD_UNCHANGED  # keeps 16-bit / float depth
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as e:
        raise ImageReadError(f"{path}: OpenCV could not decode the file ({e})") from e
    del data
    if image is None or image.size == 0:
        raise ImageReadError(f"{path}: not a readable image (corrupt, truncated, or a format "
                             f"OpenCV cannot decode)")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels in (1, 2):
        image = np.broadcast_to(image[:, :, :1], image.shape[:2] + (3,))
    elif channels in (3, 4):
        image = image[:, :, 2::-1]  # BGR(A) -> RGB
    else:
        raise ImageReadError(f"{path}: unsupported channel count {channels}")
    if image.dtype == np.uint8:
        return image, 8
    if image.dtype == np.uint16:
        return image, 16
    if image.dtype.kind == "f":
        image = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(image, 0.0, 1.0, out=image), 16
    raise ImageReadError(f"{path}: unsupported pixel type {image.dtype}")


def to_float_rgb(image):
    """uint8 / uint16 / float RGB array -> contiguous float32 in [0, 1]."""
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype)
    out = np.array(image, dtype=np.float32)  # always a writable copy
    if scale is not None:
        out *= np.float32(1.0 / scale)
    return out


def read_image(path):
    """Reads an image as float32 RGB (H, W, 3) in [0, 1]; returns ``(image, bit_depth)``.

    8/16-bit integer images are divided by 255/65535, float images clipped; see
    ``read_image_raw`` for the rules and errors.
    """
    raw, depth = read_image_raw(path)
    return to_float_rgb(raw), depth


def write_image(path, image, bit_depth=8):
    """Writes float RGB [0, 1] (clipped) as an 8/16-bit PNG, atomically (temp file + rename).

    Converted in bands of rows, so no full-size float temporary is created. A uint8 (uint16)
    image of the requested bit depth is taken as finished pixels (``dehaze(..., dtype=...)``).
    """
    path = os.fspath(path)
    scale, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
    image = np.asarray(image)
    pixels = np.empty(image.shape[:2] + (3,), dtype=dtype)
    for r0 in range(0, image.shape[0], 256):
        if image.dtype == dtype:
            pixels[r0:r0 + 256] = image[r0:r0 + 256, :, ::-1]  # RGB -> BGR
            continue
        band = image[r0:r0 + 256, :, ::-1]
        if band.dtype in (np.uint8, np.uint16):  # the other integer depth
            band = band.astype(np.float32) / np.float32(np.iinfo(band.dtype).max)
        band = np.clip(band, 0.0, 1.0) * np.float32(scale)  # RGB -> BGR
        pixels[r0:r0 + 256] = np.round(band)
    ok, encoded = cv2.imencode(".png", pixels)
    del pixels
    if not ok:
        raise OSError(f"{path}: OpenCV failed to encode the PNG")
    parent = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(encoded.tobytes())
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# --------------------------------------------------------------------------- inputs / outputs

def collect_inputs(specs, recursive=False):
    """Expands files, folders and glob patterns. Returns ``(files, errors)`` (no duplicates)."""
    files, errors = [], []
    for spec in specs:
        if os.path.isdir(spec):
            found = []
            if recursive:
                for root, dirs, names in os.walk(spec):
                    dirs.sort()
                    found += [os.path.join(root, n) for n in sorted(names)]
            else:
                found = [os.path.join(spec, n) for n in sorted(os.listdir(spec))]
            found = [p for p in found
                     if os.path.isfile(p) and os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS]
            if not found:
                errors.append(f"{spec}: folder contains no images ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif os.path.exists(spec):
            files.append(spec)
        elif glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not found:
                errors.append(f"{spec}: no file matches this pattern")
            files += found
        else:
            errors.append(f"{spec}: no such file or directory")
    unique, seen = [], set()
    for f in files:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, errors


def output_paths(files, outdir):
    """``OUTDIR/<stem>_dehazed.png`` per input (``_2``, ``_3``... if two inputs share a stem).

    Returns a list of ``(output path or None, error or None)``: an output path that is one of
    the inputs is refused (None, reason).
    """
    inputs = {os.path.realpath(f) for f in files}
    inodes = set()  # (device, inode) of the inputs: catches hard links to an input too
    for f in files:
        try:
            st = os.stat(f)
            inodes.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    used, result = set(), []
    for f in files:
        stem = os.path.splitext(os.path.basename(f))[0]
        candidate = os.path.join(outdir, f"{stem}_dehazed.png")
        n = 2
        while os.path.realpath(candidate) in used:
            candidate = os.path.join(outdir, f"{stem}_dehazed_{n}.png")
            n += 1
        real = os.path.realpath(candidate)
        used.add(real)
        clash = real in inputs
        if not clash:
            try:
                st = os.stat(candidate)
                clash = (st.st_dev, st.st_ino) in inodes
            except OSError:
                pass
        if clash:
            result.append((None, f"{f}: refusing to write {candidate}: that path is one of the "
                                 f"input files (choose another -o folder)"))
        else:
            result.append((candidate, None))
    return result


# --------------------------------------------------------------------------- CLI

def parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 256x256), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def build_parser():
    p = argparse.ArgumentParser(
        prog="infer.py",
        description="Dehaze images with a .tflite model (no TensorFlow needed). Writes "
                    "OUTDIR/<stem>_dehazed.png; never overwrites inputs.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders or glob patterns")
    p.add_argument("--model", "-m", required=True, help="the .tflite model")
    p.add_argument("-o", "--output", "--outdir", dest="outdir", required=True,
                   help="output folder (created if missing)")
    p.add_argument("--threads", type=int, default=None,
                   help="interpreter threads (default: number of CPU cores)")
    p.add_argument("--tile-overlap", type=int, default=None,
                   help="minimum overlap in pixels between tiles (default: 32 for tiles of the "
                        "model's own size, a quarter of the tile for tiles < 128; 96 for tiles "
                        "of a resized model)")
    p.add_argument("--tile", type=parse_size, default=None, metavar="HxW",
                   help="tile size for models run at the image's size (dynamic or resized "
                        "models; default: the whole image if it fits --max-megapixels, else "
                        "the largest tiles that do)")
    p.add_argument("--max-megapixels", type=float, default=None, metavar="MP",
                   help="pixel budget of one interpreter run for models run at the image's size "
                        "(default 0.26 for int8 models, 0.2 for float ones: about 1 GB peak "
                        "memory with LKD-Net); larger runs are faster and use more memory")
    p.add_argument("--no-resize", dest="resize", action="store_false",
                   help="run fixed-size models only at their own size (tiles), never resized "
                        "to the image")
    p.add_argument("--multiple", type=int, default=4,
                   help="the network's down-sampling factor: dynamic-size models are padded to "
                        "a multiple of it, tiles start on multiples of it (default 4)")
    p.add_argument("--bit-depth", choices=("auto", "8", "16"), default="auto",
                   help="PNG bit depth (auto: 16 for 16-bit/float inputs, else 8)")
    p.add_argument("--accelerator", choices=ACCELERATORS, default="cpu",
                   help="cpu: the TFLite interpreter (default); gpu: LiteRT's GPU accelerator "
                        "(WebGPU; on Linux needs Vulkan, e.g. Mesa 25 lavapipe; fixed-size "
                        "models only; refuses models it cannot run entirely on the GPU)")
    p.add_argument("--gpu-precision", choices=GPU_PRECISIONS, default="fp32",
                   help="with --accelerator gpu: fp32 (enforce float32, default) or default "
                        "(the accelerator's choice: float16 arithmetic)")
    p.add_argument("--gpu-allow-partial", action="store_true",
                   help="with --accelerator gpu: run operators the GPU does not take on the CPU "
                        "instead of refusing the model")
    p.add_argument("--recursive", "-r", action="store_true", help="search folders recursively")
    p.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads is not None and args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    max_pixels = None
    if args.max_megapixels is not None:
        if not args.max_megapixels > 0:
            print(f"error: --max-megapixels must be > 0, got {args.max_megapixels}", file=sys.stderr)
            return 2
        max_pixels = int(args.max_megapixels * 1e6)
    try:
        dehazer = TFLiteDehazer(args.model, threads=args.threads, tile_overlap=args.tile_overlap,
                                multiple=args.multiple, tile=args.tile,
                                accelerator=args.accelerator, gpu_precision=args.gpu_precision,
                                gpu_allow_partial=args.gpu_allow_partial, resize=args.resize,
                                max_pixels=max_pixels)
    except (ImportError, OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files, errors = collect_inputs(args.inputs, args.recursive)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if not files:
        print("error: no input images found", file=sys.stderr)
        return 2
    if os.path.exists(args.outdir) and not os.path.isdir(args.outdir):
        print(f"error: {args.outdir} exists and is not a folder", file=sys.stderr)
        return 2
    try:
        os.makedirs(args.outdir, exist_ok=True)
    except OSError as e:
        print(f"error: cannot create the output folder {args.outdir} ({e.strerror or e})", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"{dehazer!r}: {len(files)} image(s) -> {args.outdir}")
    failed = len(errors)
    done = 0
    for f, (out_path, refusal) in zip(files, output_paths(files, args.outdir)):
        if refusal:
            print(f"error: {refusal}", file=sys.stderr)
            failed += 1
            continue
        try:
            image, depth = read_image_raw(f)
            bit_depth = depth if args.bit_depth == "auto" else int(args.bit_depth)
            start = time.perf_counter()
            result = dehazer.dehaze(image, dtype=np.uint8 if bit_depth == 8 else np.uint16)
            elapsed = time.perf_counter() - start
            h, w = image.shape[:2]
            del image  # freed before the PNG is encoded (huge photos)
            write_image(out_path, result, bit_depth)
            del result
        except Exception as e:  # one bad file must not stop the others
            message = str(e) if isinstance(e, ImageReadError) else f"{f}: {type(e).__name__}: {e}"
            print(f"error: {message} (skipped)", file=sys.stderr)
            failed += 1
            continue
        done += 1
        if not args.quiet:
            mode, (rh, rw) = dehazer.last_plan
            how = {"whole": "whole image", "tiles": "tiles", "fixed": "tiles"}[mode]
            print(f"ok {f} -> {out_path} ({w}x{h}, {dehazer.last_tiles} run(s), {how} "
                  f"{rw}x{rh}, {elapsed * 1000:.0f} ms)")
    if not args.quiet or failed:
        print(f"{done} image(s) written, {failed} failed", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
