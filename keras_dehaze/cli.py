"""The ``keras-dehaze`` command line: ``keras-dehaze dehaze|eval|train ...``."""

import argparse
import os
import sys

from keras_dehaze import __version__

MODEL_HELP = ("a bundled network (default: aecrnet, the shipped AE-CR-Net), 'dcp' (dark channel prior), "
              "'identity', or a path to a .keras or .tflite file")


def _train(args):
    """Exit codes: 0 done; 2 a problem with the config, data, output folder or a checkpoint
    (one "error: ..." line, no traceback, nothing written); 1 the loss became NaN/inf (the
    last good checkpoint is kept)."""
    from keras_dehaze.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.set)
    except ConfigError as e:
        print(f"error: config: {e}", file=sys.stderr)
        return 2
    from keras_dehaze.callbacks import CheckpointError, NonFiniteLossError
    from keras_dehaze.data import DatasetError
    from keras_dehaze.experiment import run
    from keras_dehaze.trainers.colabator import PretrainedWeightsError

    try:
        run(config)
    except (ConfigError, DatasetError, CheckpointError, PretrainedWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _tile_side(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"tile side must be an integer, got {text!r}") from None
    if value < 64:
        raise argparse.ArgumentTypeError(f"tile side must be at least 64 pixels (twice the 32-pixel overlap), got {value}")
    return value


def _load(spec, threads=None, tile=None):
    from keras_dehaze.inference import DEFAULT_TILE, ModelLoadError, load_dehazer

    try:
        return load_dehazer(spec, threads=threads, tile=tile or DEFAULT_TILE)
    except (ModelLoadError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def _dehaze(args):
    import numpy as np
    from tqdm import tqdm

    from keras_dehaze.edge_runner import collect_inputs, output_paths
    from keras_dehaze.data.image_io import ImageReadError, ImageWriteError, read_image_raw, write_image

    files, errors = collect_inputs(args.inputs, recursive=args.recursive)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if not files:
        print("error: no input images", file=sys.stderr)
        return 1
    try:  # before loading the model: a folder that cannot be created fails once, clearly
        os.makedirs(args.output, exist_ok=True)
    except OSError as e:
        print(f"error: cannot create the output folder {args.output} ({e.strerror or e})", file=sys.stderr)
        return 2
    dehazer = _load(args.model, args.threads, args.tile)
    if dehazer is None:
        return 2
    failed = len(errors)
    for path, (out, problem) in tqdm(list(zip(files, output_paths(files, args.output))), unit="image",
                                     disable=args.quiet, desc=f"dehazing with {dehazer.name}"):
        if problem:
            tqdm.write(f"error: {problem}", file=sys.stderr)
            failed += 1
            continue
        try:  # stored depth in, 8-bit pixels out: no full-size float copies of huge photos
            result = dehazer(read_image_raw(path), dtype=np.uint8)  # the input is freed before the write
            write_image(out, result)
            del result
        except (ImageReadError, ImageWriteError, ValueError, OSError) as e:
            tqdm.write(f"error: {path}: {e}", file=sys.stderr)  # skip it, keep going
            failed += 1
    done = len(files) - (failed - len(errors))
    print(f"{done} image(s) written to {args.output}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _eval(args):
    from keras_dehaze.evaluation_cli import run_evaluation

    return run_evaluation(args)


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-dehaze", description="Single-image dehazing with Keras and TFLite.")
    parser.add_argument("--version", action="version", version=f"keras-dehaze {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{dehaze,eval,train}")

    dehaze = sub.add_parser("dehaze", help="dehaze image files, folders or globs",
                            description="Dehaze images of any size (large ones in seamless tiles). "
                                        "Writes OUTDIR/<name>_dehazed.png; never overwrites inputs.")
    dehaze.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    dehaze.add_argument("-o", "--output", default="dehazed", metavar="OUTDIR", help="output folder (default: dehazed)")
    dehaze.add_argument("--model", default=None, help=MODEL_HELP)
    dehaze.add_argument("--threads", type=int, default=None, help="interpreter threads for .tflite models")
    dehaze.add_argument("--tile", type=_tile_side, default=None, metavar="PIXELS",
                        help="tile side for Keras models (default 1024); smaller tiles use less memory "
                             "(a 1600x1200 photo peaks at about 4 GB with 1024)")
    dehaze.add_argument("--recursive", action="store_true", help="also read images in sub-folders")
    dehaze.add_argument("--quiet", action="store_true", help="no progress bar")
    dehaze.set_defaults(func=_dehaze)

    ev = sub.add_parser("eval", help="score models on benchmark folders (PSNR/SSIM/CIEDE2000 or no-reference)",
                        description="Scores each model (plus the hazy input and DCP baselines) on each folder. "
                                    "Paired layouts (RESIDE, {GT,hazy}, NTIRE) get full-reference metrics; "
                                    "folders without ground truth get no-reference scores.")
    ev.add_argument("datasets", nargs="+", metavar="FOLDER")
    ev.add_argument("--model", action="append", default=[], help=MODEL_HELP + " (repeatable)")
    ev.add_argument("-o", "--output", default="eval_results", metavar="OUTDIR")
    ev.add_argument("--max-side", type=int, default=None, help="downscale images so the longer side is at most this")
    ev.add_argument("--limit", type=int, default=None, help="score only the first N images of each folder")
    ev.add_argument("--scenes", default=None,
                    help="comma-separated scene ids (clear-image names) to score, e.g. held-out validation scenes")
    ev.add_argument("--examples", type=int, default=3, help="images shown in the PNG grid")
    ev.add_argument("--threads", type=int, default=None)
    ev.set_defaults(func=_eval)

    train = sub.add_parser("train", help="train a network from a YAML config (as training/train.py)")
    train.add_argument("--config", help="YAML experiment config")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    train.set_defaults(func=_train)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "output", None):
        args.output = os.path.expanduser(args.output)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
