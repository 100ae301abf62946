"""``keras-dehaze dehaze``: image files, folders or globs -> OUTDIR/<stem>_dehazed.png.

The per-image loop is ``keras_dehaze.dehaze_files`` (shared with the edge runner); this module
adds the command's options, its progress bar and its exit codes.
"""

import os
import sys

from keras_dehaze.dehaze_files import Progress as _Progress

class Progress(_Progress):
    """A tqdm bar counting images in fractions: tiles (or DCP strips) of the current image move it."""

    def __init__(self, total, desc, disable):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="image", disable=disable, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total} images "
                                   "[{elapsed}<{remaining}{postfix}]")
        self.index = 0
        self.name = ""

    def start(self, index, path):
        self.index, self.name = index, os.path.basename(path)
        self.bar.set_postfix_str(self.name, refresh=False)
        self.bar.n = index
        self.bar.refresh()

    def tiles(self, done, total):
        self.bar.n = self.index + (done / total if total else 1)
        if total > 1:
            self.bar.set_postfix_str(f"{self.name}: part {done}/{total}", refresh=False)
        self.bar.refresh()

    def error(self, message):
        self.bar.write(f"error: {message}", file=sys.stderr)

    def close(self, interrupted=False):
        if not interrupted:
            self.bar.n = self.bar.total
        self.bar.close()


def with_working_resolution(dehazer, megapixels):
    """Networks run on the photo downscaled to ``megapixels`` and guided-upsampled
    (``keras_dehaze.guided_upsampling``); 0, ``dcp`` and ``identity`` stay at full resolution."""
    from keras_dehaze.guided_upsampling import GuidedDehazer
    from keras_dehaze.inference import DCPDehazer, IdentityDehazer

    if not megapixels or isinstance(dehazer, (DCPDehazer, IdentityDehazer)):
        return dehazer
    return GuidedDehazer(dehazer, int(megapixels * 1e6))


def run(args):
    """Exit codes: 0 all written; 1 a file failed or an output was not overwritten (the others are
    written), or no input image; 2 the model or the output folder could not be used (nothing
    written). Ctrl-C raises KeyboardInterrupt (``keras_dehaze.cli`` exits with 130)."""
    from keras_dehaze.commands.common import load_model
    from keras_dehaze.dehaze_files import collect_inputs, dehaze_files

    files, errors = collect_inputs(args.inputs, recursive=args.recursive)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if not files:
        print("error: no input images", file=sys.stderr)
        return 1
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        print(f"error: the output folder {args.output} exists and is not a folder", file=sys.stderr)
        return 2
    precision = getattr(args, "precision", None)
    if precision is not None and args.model and args.model.endswith((".tflite", ".keras")):
        print(f"error: --precision applies to presets; {args.model} runs in its own precision", file=sys.stderr)
        return 2
    dehazer = load_model(args.model, threads=args.threads, tile=args.tile, precision=precision or "auto",
                         accelerator=getattr(args, "accelerator", "cpu"))
    if dehazer is None:
        return 2
    dehazer = with_working_resolution(dehazer, getattr(args, "work_megapixels", 0))
    try:  # only once the model loaded: a bad model leaves no empty output folder behind
        os.makedirs(args.output, exist_ok=True)
    except OSError as e:
        print(f"error: cannot create the output folder {args.output} ({e.strerror or e})", file=sys.stderr)
        return 2
    progress = Progress(len(files), f"dehazing with {dehazer.name}", disable=args.quiet)
    outcome = dehaze_files(files, args.output, dehazer, bit_depth=args.bit_depth, overwrite=args.overwrite,
                           progress=progress)
    failed = len(errors) + outcome.failed
    summary = f"{outcome.written} image(s) written to {args.output}"
    if failed:
        summary += f"; {failed} failed"
    if outcome.refused:
        summary += f"; {outcome.refused} not overwritten (already exist; --overwrite replaces them)"
    print(summary)
    return 1 if failed or outcome.refused else 0
