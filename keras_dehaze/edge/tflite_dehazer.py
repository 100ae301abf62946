"""Dehaze an image of any size with a ``.tflite`` model: numpy, OpenCV-free, no TensorFlow.

``TFLiteDehazer`` runs a dehazing ``.tflite`` (input [1, H, W, 3] RGB in [0, 1], output the same
shape; float32, float16, int8 or uint8 tensors) on images of any size. It is what the on-device
runner (``keras_dehaze.edge.runner``, ``edge/infer.py``) and ``keras-dehaze dehaze --model
x.tflite`` run; the model itself is a ``keras_dehaze.edge.interpreter.TFLiteModel`` (the one
TFLite wrapper: interpreter, XNNPACK fallback, quantisation).

Any image size works. A ``.tflite`` normally has a fixed input size (e.g. 1x256x256x3). A graph
converted at a size that is a multiple of 4 has no pad/crop ops, so the interpreter can be resized
(``resize_tensor_input`` + ``allocate_tensors``) and computes at any multiple of 4 what a
conversion at that size computes: the image is padded to a multiple of ``multiple`` (reflect)
and run whole if it fits the pixel budget (``max_pixels``: about 1 GB peak memory), else in the
fewest equal tiles the budget allows, overlapping by ``tile_overlap`` and blended with a smooth
window, so no seams are visible (``keras_dehaze.tiling``). Graphs with shapes baked in (the int8
AE-CR-Net's deformable-conv sampling grid) refuse the resize; they, and every model with
``resize=False`` or on the GPU, run in tiles of their own size (images smaller than it are padded
up). Models with a dynamic input size are treated like resizable ones (``tile`` forces a tile
size).

``accelerator="gpu"`` runs the model on LiteRT's GPU accelerator (``CompiledModel``, WebGPU;
``keras_dehaze.edge.litert_gpu``). It needs a fixed-size model; a model with operators the GPU
does not take (e.g. the int8 AE-CR-Net's TRANSPOSE_CONV, GATHER_ND) is refused unless
``gpu_allow_partial``. On Linux the accelerator needs a Vulkan driver (a GPU's, or Mesa >= 25's
software lavapipe: docs/deployment.md).

Usage::

    from keras_dehaze.edge.tflite_dehazer import TFLiteDehazer
    from keras_dehaze.data.image_io import read_image, write_image
    d = TFLiteDehazer("model.tflite", threads=2)
    g = TFLiteDehazer("model_float32.tflite", accelerator="gpu", gpu_precision="fp32")
    d.input_size, d.input_dtype          # (256, 256), dtype('int8')
    out = d(read_image("hazy.jpg"))      # float32 RGB in [0, 1], same size
"""

from __future__ import annotations

import os
import sys

import numpy as np

from keras_dehaze import tiling
from keras_dehaze.edge import litert_gpu
from keras_dehaze.edge.interpreter import TFLiteModel

__all__ = ["ACCELERATORS", "GPU_PRECISIONS", "TFLiteDehazer"]

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
# gpu_precision: fp32 = GpuOptions(enforce_f32=True); default = the accelerator's own choice
# (float16 arithmetic on most GPUs, ~50-60 dB from the CPU result).
GPU_PRECISIONS = ("fp32", "default")


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
            accelerator through ``CompiledModel`` (``keras_dehaze.edge.litert_gpu``; needs a
            fixed-size model and, on Linux, a Vulkan driver, e.g. Mesa 25's lavapipe).
        gpu_precision: "fp32" (default; ``GpuOptions(enforce_f32=True)``, matches the CPU to
            ~140 dB) or "default" (the accelerator's choice, float16 arithmetic, ~50-60 dB).
        gpu_allow_partial: with "gpu": run operators the GPU does not take on the CPU instead
            of refusing the model (``GpuPartialAccelerationError``).

    Raises (besides the model errors): ``litert_gpu.GpuUnavailableError`` (no GPU adapter) and
    ``litert_gpu.GpuPartialAccelerationError``, both ``RuntimeError``, for ``accelerator="gpu"``.

    Attributes:
        model: the ``TFLiteModel`` (interpreter, tensor details, quantisation).
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
        xnnpack_error: why the XNNPACK delegate refused the model (None if it took it; the
            builtin kernels run it then, with a warning on stderr).
        display_name: shown as ``name`` instead of the file name (e.g. "aecrnet_default (int8)").

    Calling it (``dehazer(image, dtype=..., progress=...)``) is ``dehaze``: the interface of every
    dehazer of ``keras_dehaze.inference``.
    """

    needs_tensorflow = False
    display_name = None

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
        self.threads = int(threads) if threads else (os.cpu_count() or 1)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.model_path = model_path
        self.multiple = int(multiple)
        self.tile = None if tile is None else tuple(int(v) for v in tile)
        self.resize_error = None
        # On the GPU the interpreter only describes the model (no tensors allocated).
        self.model = TFLiteModel(model_path, threads=self.threads,
                                 allocate=self.accelerator == "cpu")
        self.backend = self.model.backend
        self.xnnpack_error = self.model.xnnpack_error
        if self.xnnpack_error:
            print(f"warning: {model_path}: the XNNPACK delegate refused the model; running it with "
                  f"the builtin kernels (slower). ({self.xnnpack_error})", file=sys.stderr)
        shape = list(self.model.input_shape)
        out_shape = list(self.model.output_shape)
        if len(out_shape) != 4 or out_shape[3] != 3:
            raise ValueError(f"{model_path}: expected an output of shape [1, H, W, 3] (RGB), "
                             f"got {out_shape}")
        signature = list(self.model.signature)
        if len(shape) != 4 or shape[3] != 3:
            raise ValueError(f"{model_path}: expected an input of shape [1, H, W, 3] (RGB), "
                             f"got {shape}")
        if signature[0] not in (1, -1):
            raise ValueError(f"{model_path}: the input batch size is {signature[0]}; "
                             f"only batch size 1 models are supported")
        self.dynamic = self.model.dynamic
        self.input_size = None if self.dynamic else (shape[1], shape[2])
        self.input_dtype = self.model.input_dtype
        self.output_dtype = self.model.output_dtype
        self._check_dtype(self.input_dtype, "input")
        self._check_dtype(self.output_dtype, "output")
        if self.input_dtype.kind in "iu" and self.model.input_quant[0] == 0:
            raise ValueError(f"{model_path}: integer input without quantization parameters")
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
        self.gpu_model = litert_gpu.compile_on_gpu(self.model_path,
                                                   enforce_f32=self.gpu_precision == "fp32",
                                                   allow_partial=allow_partial)
        shape = tuple(self.model.input_shape)
        if len(self.gpu_model.inputs) != 1 or self.gpu_model.inputs[0]["shape"] != shape:
            raise ValueError(f"{self.model_path}: the GPU-compiled model's inputs "
                             f"{[i['shape'] for i in self.gpu_model.inputs]} differ from the "
                             f"interpreter's {shape}")
        out_shape = self.model.output_shape
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

    # -- running
    def _ensure_shape(self, shape):
        shape = tuple(int(v) for v in shape)
        if shape != self.model.input_shape:
            self.model.resize(shape, strict=self.dynamic)

    def _try_resize(self, shape):
        """Resizes a fixed-size model to ``shape``; False (model back at its own size, never
        tried again) if the graph refuses it or its output would not have the input's size."""
        if self.resizable is False:
            return False
        try:
            self._ensure_shape(shape)
            if list(self.model.output_shape[1:3]) != list(shape[1:3]):
                raise ValueError(f"output shape {list(self.model.output_shape)} for input "
                                 f"{list(shape)}")
        except (ValueError, RuntimeError) as e:
            if self.dynamic:
                raise
            self.resize_error = str(e).strip()
            self.resizable = False
            self.model.resize(self._native_shape, strict=False)
            return False
        self.resizable = True
        return True

    def run(self, batch):
        """One model call: float32 [1, h, w, 3] in [0, 1] -> float32 [1, h, w, C]."""
        batch = np.asarray(batch, dtype=np.float32)
        if tuple(batch.shape) != self.model.input_shape:
            if not (self.dynamic or self.resizable):
                raise ValueError(f"the model needs input shape {list(self.model.input_shape)}, "
                                 f"got {list(batch.shape)}")
            self._ensure_shape(batch.shape)
        if self.gpu_model is not None:  # the same quantisation as the CPU path
            result = self.gpu_model.run(self.model.quantize(batch))[self._gpu_out_index]
            self.last_tiles += 1
            return self.model.dequantize(result)
        out = self.model.run(batch)
        self.last_tiles += 1
        return out

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
        tile_starts = tiling.tile_starts

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

    def tiles(self, shape):
        """Number of model runs for an image of ``shape`` (H, W, ...); tries the resize (once)
        like ``dehaze`` would."""
        h, w = shape[:2]
        mode, size = self.prepare(h, w)
        if mode == "whole":
            return 1
        align = self._align if mode == "fixed" else self.multiple
        return tiling.count_tiles((h, w), size, self.overlap(mode), align)

    def check_output_size(self):
        """Raises ValueError unless the model returns an image of its input's size (a dehazing
        model); a dynamic-size model is run once on a small probe to find out."""
        in_shape = list(self.model.input_shape)
        if self.dynamic:  # some graphs only reveal their output size at run time
            side = 16 * self.multiple
            probe = np.full((1, side, side, 3), 0.5, np.float32)
            try:
                out_shape = list(np.asarray(TFLiteDehazer.run(self, probe)).shape)
            except (ValueError, RuntimeError) as e:
                raise ValueError(f"{self.model_path}: the model fails on a {side}x{side} test "
                                 f"input ({e})") from None
            in_shape = list(probe.shape)
        else:
            out_shape = list(self.model.output_shape)
        if out_shape[1:3] != in_shape[1:3]:
            raise ValueError(
                f"{self.model_path}: not a dehazing model for this tool: its output is "
                f"{out_shape[1]}x{out_shape[2]} pixels for a {in_shape[1]}x{in_shape[2]} input "
                "(a dehazing model must return an image of its input's size)")

    def dehaze(self, image, dtype=np.float32, progress=None):
        """Dehazes an RGB image (H, W, 3) of any size: float in [0, 1], or uint8 / uint16
        (scaled to [0, 1] tile by tile). Returns float32 (H, W, 3) clipped to [0, 1]; with
        ``dtype=np.uint8`` / ``np.uint16``, the pixels ``round(clip(x, 0, 1) * 255)`` (65535),
        written row band by row band when tiled (no full-size float array: for a 12000x9000
        photo 324 MB instead of 1.3 GB).

        Fixed-size models are resized to the image (see ``resize``) when the graph allows it:
        the whole image in one run if it fits ``max_pixels``, else the fewest tiles the budget
        allows; models that cannot be resized run in tiles of their own size.

        ``progress(done, total)`` is called after each model run."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.uint8), np.dtype(np.uint16)):
            raise ValueError(f"dtype must be float32, uint8 or uint16, got {dtype}")
        self.last_tiles = 0
        mode, size = self.last_plan = self.prepare(*image.shape[:2])
        if mode == "fixed":
            out = tiling.dehaze_tiled(image, self.run, size, overlap=self.tile_overlap,
                                      multiple=self._align, out_dtype=dtype, progress=progress)
        elif mode == "tiles":
            out = tiling.dehaze_tiled(image, self.run, size, overlap=self.overlap(mode),
                                      multiple=self.multiple, out_dtype=dtype, progress=progress)
        else:
            h, w = image.shape[:2]
            padded = tiling.pad_to_size(tiling.to_unit_float(image), size)
            out = self.run(np.ascontiguousarray(padded)[None])[0, :h, :w]
            del padded
            if progress is not None:
                progress(1, 1)
            if dtype != np.float32:
                return tiling.from_unit_float(out, dtype)
            out = np.ascontiguousarray(out)
        if dtype == np.float32:
            np.clip(out, 0.0, 1.0, out=out)
        return out

    __call__ = dehaze  # the same interface as keras_dehaze.inference's dehazers

    @property
    def name(self):
        return self.display_name or os.path.basename(self.model_path)
