"""The ``keras-dehaze`` command line: ``keras-dehaze [--verbose] dehaze|eval|train ...``.

The subcommands live in ``keras_dehaze.commands``. Nothing here imports TensorFlow: ``--help``,
``.tflite`` models, ``dcp`` and ``identity`` run without it. TensorFlow's C++/Python log
messages are silenced unless ``--verbose`` is given (``keras_dehaze.quiet``). Ctrl-C stops with
one line and exit status 130, leaving no partial output file.
"""

import argparse
import os
import sys

from keras_dehaze import __version__

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def model_help():
    from keras_dehaze.inference import model_names_text

    return (f"a model name ({model_names_text()}; 'dcp' is the dark channel prior, 'identity' the hazy "
            "input itself) or a path to a .keras or .tflite file")


def _tile_side(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"tile side must be an integer, got {text!r}") from None
    if value < 64:
        raise argparse.ArgumentTypeError(f"tile side must be at least 64 pixels (twice the 32-pixel overlap), got {value}")
    return value


def _megapixels(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected megapixels (a number, 0 for full resolution), got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"megapixels must be >= 0, got {value}")
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _run_dehaze(args):
    from keras_dehaze.commands.dehaze import run

    return run(args)


def _run_eval(args):
    from keras_dehaze.commands.eval import run

    return run(args)


def _run_train(args):
    from keras_dehaze.commands.train import run

    return run(args)


def build_parser():
    from keras_dehaze.edge.tflite_dehazer import ACCELERATORS
    from keras_dehaze.inference import DEFAULT_TILE
    from keras_dehaze.guided_upsampling import DEFAULT_WORK_PIXELS

    # --verbose is accepted before and after the subcommand (SUPPRESS: a subcommand's default
    # does not override a --verbose given before it).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show TensorFlow's log messages (hidden by default)")
    parser = argparse.ArgumentParser(prog="keras-dehaze", parents=[common],
                                     description="Single-image dehazing with Keras and TFLite.")
    parser.add_argument("--version", action="version", version=f"keras-dehaze {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{dehaze,eval,train}")
    models = model_help()

    dehaze = sub.add_parser(
        "dehaze", parents=[common], help="dehaze image files, folders or globs",
        description="Dehaze images of any size (large ones in seamless tiles). Writes OUTDIR/<name>_dehazed.png "
                    "(PNG); never overwrites inputs, and never overwrites existing outputs without --overwrite. "
                    "Ctrl-C stops cleanly (exit status 130) without leaving a partial file.",
        epilog="Exit status: 0 all written; 1 some file failed or was not overwritten (the others are "
               "written); 2 the model or the output folder could not be used (nothing written); 130 interrupted.")
    dehaze.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    dehaze.add_argument("-o", "--output", default="dehazed", metavar="OUTDIR",
                        help="output folder, created once the model has loaded (default: dehazed)")
    dehaze.add_argument("--model", default=None, help=models)
    dehaze.add_argument("--threads", type=_positive_int, default=None,
                        help="interpreter threads for .tflite models (default: all CPU cores)")
    dehaze.add_argument("--precision", choices=("int8", "float"), default=None,
                        help="for a preset: int8 runs the int8 .tflite file it ships with LiteRT (fast, "
                             "TensorFlow is not loaded; the default when the preset ships one), float the "
                             "Keras network (TensorFlow, tiles of --tile; the default otherwise)")
    dehaze.add_argument("--accelerator", choices=ACCELERATORS, default="cpu",
                        help="for .tflite models (and int8 presets): cpu (default) or gpu (LiteRT's GPU "
                             "accelerator; runs the model at its own size, large images in tiles of it)")
    dehaze.add_argument("--tile", type=_tile_side, default=None, metavar="PIXELS",
                        help=f"tile side for Keras models (default {DEFAULT_TILE}, which keeps the bundled "
                             "network under 1.5 GB of memory on any photo size); larger tiles are faster "
                             "and use more memory")
    dehaze.add_argument("--work-megapixels", type=_megapixels, default=DEFAULT_WORK_PIXELS / 1e6, metavar="MP",
                        help=f"networks see the whole photo downscaled to at most MP megapixels (default "
                             f"{DEFAULT_WORK_PIXELS / 1e6:g}; photos up to 1.7x that run as they are); the result is carried "
                             "to full size by guided upsampling, which keeps the photo's detail. 0: run the "
                             "network at full resolution (slow; large photos in tiles). Not used by dcp/identity")
    dehaze.add_argument("--bit-depth", choices=("8", "16", "auto"), default="8",
                        help="bits per channel of the output PNGs: 8 (default), 16, or auto (16 for 16-bit "
                             "and float inputs, 8 for 8-bit inputs: the input's depth, as edge/infer.py)")
    dehaze.add_argument("--overwrite", action="store_true",
                        help="replace output files that already exist (default: report and skip them)")
    dehaze.add_argument("--recursive", action="store_true", help="also read images in sub-folders")
    dehaze.add_argument("--quiet", action="store_true", help="no progress bar")
    dehaze.set_defaults(func=_run_dehaze)

    ev = sub.add_parser("eval", parents=[common],
                        help="score models on benchmark folders (PSNR/SSIM/CIEDE2000 or no-reference)",
                        description="Scores each model (plus the hazy input and DCP baselines) on each folder. "
                                    "Paired layouts (RESIDE, {GT,hazy}, NTIRE) get full-reference metrics; "
                                    "folders without ground truth get no-reference scores. Images are read "
                                    "one at a time (memory is bounded by the largest image, not the folder). "
                                    "Warns when a bundled model was trained on scenes of a scored folder.")
    ev.add_argument("datasets", nargs="+", metavar="FOLDER")
    ev.add_argument("--model", action="append", default=[],
                    help=models + " (repeatable; default: the bundled default network)")
    ev.add_argument("-o", "--output", default="eval_results", metavar="OUTDIR")
    ev.add_argument("--max-side", type=int, default=None, help="downscale images so the longer side is at most this")
    ev.add_argument("--limit", type=int, default=None, help="score only the first N images of each folder")
    ev.add_argument("--scenes", default=None,
                    help="comma-separated scene ids (clear-image names) to score, e.g. held-out validation scenes")
    ev.add_argument("--examples", type=int, default=3, help="images shown in the PNG grid")
    ev.add_argument("--threads", type=_positive_int, default=None, help="interpreter threads for .tflite models")
    ev.add_argument("--tile", type=_tile_side, default=None, metavar="PIXELS",
                    help=f"tile side for Keras models (default {DEFAULT_TILE})")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_run_eval)

    train = sub.add_parser("train", parents=[common], help="train a network from a YAML config (as training/train.py)",
                           description="Train a network as described by a YAML experiment config (required; "
                                       "examples in training/configs/). Data folders are checked before "
                                       "anything is created.")
    train.add_argument("--config", help="YAML experiment config (required, unless both --set data.train=FOLDER "
                                        "and --set run.out_dir=FOLDER are given)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    train.set_defaults(func=_run_train)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from keras_dehaze import quiet

    quiet.configure(verbose=getattr(args, "verbose", False))  # before anything imports TensorFlow
    if getattr(args, "output", None):
        args.output = os.path.expanduser(args.output)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C): stopped; no partial output file was left", file=sys.stderr)
        return EXIT_INTERRUPTED


def console_main():
    """Entry point with the exit status (also ``python -m keras_dehaze.cli``)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C while parsing or importing
        print("interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    console_main()
