"""Checkpoint -> TFLite float32 / float16 / int8, with optional QAT fine-tuning and a report.

    python edge/convert.py --model CKPT.keras|BUNDLED_NAME --out OUTDIR [--size 256 256 [--size 512 384]]
        [--qat-data PAIRED_DIR --qat-steps N] [--calib-dir DIR] [--eval-dir PAIRED_DIR]
        [--int8-float-io]

What it writes and checks, and why: keras_dehaze.edge.conversion (this script parses the options
and calls ``convert_checkpoint``; TensorFlow is imported only after the options are parsed, so
``--help`` and option errors answer at once).
"""

import argparse
import os
import sys

OUTPUT_NAMES = """output files (in --out):
  <NAME>_<H>x<W>_float32.tflite   float32, one per --size
  <NAME>_<H>x<W>_float16.tflite   float16 weights
  <NAME>_<H>x<W>_int8.tflite      full-integer int8 (only with real images: --calib-dir, --qat-data or --eval-dir)
  report.json, report.md          sizes, op histograms, GPU-delegate verdicts, parity, accuracy
NAME is the bundled network's name (--model aecrnet_default -> aecrnet_default_256x256_int8.tflite)
or the checkpoint's file name without .keras (--model runs/x/best.keras -> best_256x256_int8.tflite).
"""


def _bundled_names():
    from keras_dehaze import pretrained

    return list(pretrained.available()), pretrained.ALIASES


def parse_args(argv=None):
    bundled, aliases = _bundled_names()
    listed = ", ".join(bundled) + (f" ({', '.join(f'{a} = {t}' for a, t in aliases.items() if t in bundled)})"
                                  if bundled else "")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=OUTPUT_NAMES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help=f"float .keras checkpoint (Functional model) or a bundled network name: {listed or 'none'}")
    p.add_argument("--out", required=True, help="output folder (file names below)")
    p.add_argument("--size", nargs=2, type=int, action="append", metavar=("H", "W"),
                   help="fixed input size (repeatable; default 256 256)")
    p.add_argument("--qat-data", action="append", default=[],
                   help="paired folder for QAT fine-tuning (repeatable: e.g. the training mix)")
    p.add_argument("--qat-target", choices=("float", "gt"), default="float",
                   help="QAT loss target: the float model's output (distillation, default) or the GT")
    p.add_argument("--qat-steps", type=int, default=200,
                   help="QAT fine-tuning optimizer steps (default 200; used with --qat-data)")
    p.add_argument("--qat-crop", type=int, default=64,
                   help="side of the random square crops QAT trains on, in pixels (default 64)")
    p.add_argument("--qat-batch", type=int, default=4, help="QAT batch size (default 4)")
    p.add_argument("--qat-lr", type=float, default=1e-5, help="QAT learning rate (Adam; default 1e-5)")
    p.add_argument("--calib-dir", help="folder of real images for int8 calibration")
    p.add_argument("--calib-count", type=int, default=32, help="representative crops")
    p.add_argument("--eval-dir", help="paired folder: PSNR/SSIM vs ground truth, float vs int8")
    p.add_argument("--eval-limit", type=int, default=20, help="pairs to evaluate, evenly spaced (0 = all)")
    p.add_argument("--parity-images", type=int, default=4,
                   help="images (center crops) on which each TFLite file is compared with the Keras model "
                        "(default 4)")
    p.add_argument("--int8-float-io", action="store_true", help="float32 input/output for the int8 model")
    p.add_argument("--int8-margin-db", type=float, default=1.0,
                   help="stated margin: int8 PSNR vs GT may be at most this far below float")
    p.add_argument("--threads", type=int, default=2,
                   help="TFLite interpreter threads for the parity and accuracy runs (default 2)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed: calibration crops, QAT data order, scene hold-out (default 0)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's log messages (hidden by default)")
    args = p.parse_args(argv)
    args.size = [tuple(s) for s in (args.size or [(256, 256)])]
    name = aliases.get(args.model, args.model)
    args.bundled = name if name in bundled else None
    if args.bundled is None and not os.path.isfile(args.model):
        p.error(f"--model {args.model}: no such .keras file, and not a bundled network name "
                f"({', '.join(bundled) or 'none bundled'})")
    args.name = args.bundled or os.path.splitext(os.path.basename(args.model))[0]
    return args


def main(argv=None):
    args = parse_args(argv)
    from keras_dehaze import quiet

    quiet.configure(args.verbose)
    quiet.import_tensorflow()  # TensorFlow's start-up notices hidden unless --verbose
    from keras_dehaze.edge.conversion import convert_checkpoint

    return convert_checkpoint(args)


if __name__ == "__main__":
    sys.exit(main())
