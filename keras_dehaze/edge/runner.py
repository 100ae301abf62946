"""Dehaze images on a device with a ``.tflite`` model: numpy, OpenCV and LiteRT only, no TensorFlow.

    python edge/infer.py --model model.tflite INPUT... -o OUTDIR [--threads N] [--tile-overlap 32]
                         [--max-megapixels MP] [--no-resize]
                         [--accelerator cpu|gpu] [--gpu-precision fp32|default]
    python -m keras_dehaze.edge.runner ...      # the same, e.g. on a device

INPUT may be image files, folders (their images; ``--recursive`` for sub-folders) or glob
patterns (quote them: ``"photos/*.jpg"``). Each result is written as ``OUTDIR/<stem>_dehazed.png``
(8-bit, or 16-bit for 16-bit/float inputs; ``--bit-depth`` overrides). Inputs are never
overwritten: a file whose output path would be one of the inputs is refused. An unreadable or
truncated file is reported and skipped, the others are processed. Exit status: 0 all written; 1 a
file failed; 2 a setup error (no interpreter, bad model, no input found, output folder); 130
interrupted (Ctrl-C; no partial file is left).

How images of any size are run (whole, resized, tiles) and the GPU accelerator:
``keras_dehaze.edge.tflite_dehazer``. The per-image loop is ``keras_dehaze.dehaze_files``, the
same as ``keras-dehaze dehaze``'s.

On a device (a Raspberry Pi with 64-bit Raspberry Pi OS, or any other): copy ``DEVICE_FILES``
(the modules this runner imports, keeping their folders; ``copy_device_files(folder)`` does it),
then, in that folder::

    pip install ai-edge-litert numpy opencv-python-headless
    python -m keras_dehaze.edge.runner --model model_int8.tflite photos/ -o dehazed/ --threads 4

Nothing else of the package is needed, and none of these modules imports TensorFlow
(tests/edge/test_infer.py checks both).
"""

import argparse
import os
import shutil
import sys

__all__ = ["DEVICE_FILES", "build_parser", "copy_device_files", "main", "parse_size"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

# The files the runner imports, relative to the folder that holds ``keras_dehaze/``.
DEVICE_FILES = (
    "keras_dehaze/__init__.py",
    "keras_dehaze/atomic.py",
    "keras_dehaze/dehaze_files.py",
    "keras_dehaze/guided_upsampling.py",
    "keras_dehaze/tiling.py",
    "keras_dehaze/data/__init__.py",
    "keras_dehaze/data/image_io.py",
    "keras_dehaze/data/pairing.py",
    "keras_dehaze/edge/__init__.py",
    "keras_dehaze/edge/interpreter.py",
    "keras_dehaze/edge/litert_gpu.py",
    "keras_dehaze/edge/runner.py",
    "keras_dehaze/edge/tflite_dehazer.py",
)


def _installed(relative):
    """Path of a DEVICE_FILES entry in the installation this module was imported from."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, *relative.split("/"))


def copy_device_files(destination):
    """Copies ``DEVICE_FILES`` from this installation into ``destination`` (keeping their
    folders); returns the copied paths. Run the runner there with ``python -m
    keras_dehaze.edge.runner``."""
    copied = []
    for relative in DEVICE_FILES:
        target = os.path.join(destination, *relative.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(_installed(relative), target)
        copied.append(target)
    return copied


def _missing_files():
    """DEVICE_FILES absent from this copy of the package (an incomplete copy on a device)."""
    return [f for f in DEVICE_FILES if not os.path.isfile(_installed(f))]


def parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 256x256), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def build_parser():
    from keras_dehaze.edge.tflite_dehazer import ACCELERATORS, GPU_PRECISIONS

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
    p.add_argument("--work-megapixels", type=float, default=None, metavar="MP",
                   help="run the network on the whole photo downscaled to at most MP megapixels "
                        "and carry the result to full size by guided upsampling (default 0.18; "
                        "photos up to 1.7x that run as they are); 0: the network at full resolution (tiles "
                        "when large)")
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


def _line_progress(dehazer, quiet):
    """One "ok INPUT -> OUTPUT (size, runs, plan, ms)" line per image (none with --quiet)."""
    from keras_dehaze.dehaze_files import Progress

    class LineProgress(Progress):
        def written(self, path, out_path, size, seconds):
            if quiet:
                return
            mode, (rh, rw) = dehazer.last_plan
            how = {"whole": "whole image", "tiles": "tiles", "fixed": "tiles",
                   "guided": "guided upsampling from"}[mode]
            print(f"ok {path} -> {out_path} ({size[1]}x{size[0]}, {dehazer.last_tiles} run(s), "
                  f"{how} {rw}x{rh}, {seconds * 1000:.0f} ms)")

    return LineProgress()


def main(argv=None):
    try:
        from keras_dehaze.dehaze_files import collect_inputs, dehaze_files
        from keras_dehaze.edge.tflite_dehazer import TFLiteDehazer
        from keras_dehaze.guided_upsampling import DEFAULT_WORK_PIXELS, GuidedDehazer
    except ImportError:
        missing = _missing_files()
        if not missing:
            raise
        print(f"error: {', '.join(missing)} not found: this copy of the runner is incomplete. It "
              f"needs {', '.join(DEVICE_FILES)} (keep their folders; "
              f"keras_dehaze.edge.runner.copy_device_files copies them)", file=sys.stderr)
        return 2
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
    work = DEFAULT_WORK_PIXELS / 1e6 if args.work_megapixels is None else args.work_megapixels
    if not work >= 0:
        print(f"error: --work-megapixels must be >= 0, got {args.work_megapixels}", file=sys.stderr)
        return 2
    if work > 0:
        dehazer = GuidedDehazer(dehazer, int(work * 1e6), multiple=args.multiple)
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
    try:
        outcome = dehaze_files(files, args.outdir, dehazer, bit_depth=args.bit_depth, overwrite=True,
                               progress=_line_progress(dehazer, args.quiet))
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C): stopped; no partial output file was left", file=sys.stderr)
        return EXIT_INTERRUPTED
    failed = len(errors) + outcome.failed
    if not args.quiet or failed:
        print(f"{outcome.written} image(s) written, {failed} failed", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
