"""``keras-dehaze dehaze``: image files, folders or globs -> OUTDIR/<stem>_dehazed.png."""

import glob
import os
import sys

ERROR_OPTIONS = "per-file problems are reported and skipped; the exit status is 1 if any file failed or was skipped"


def problem_text(path, error):
    """One line per problem: the path once, then what is wrong (the messages of
    keras_dehaze.data.image_io already start with the path)."""
    message = str(error).strip() or type(error).__name__
    return message if str(path) in message else f"{path}: {message}"


def output_bit_depth(choice, image):
    """``--bit-depth``: "8", "16" or "auto" (16 for 16-bit and float inputs, else 8), the same
    rule as edge/infer.py."""
    if choice == "auto":
        return 8 if image.dtype.itemsize == 1 else 16
    return int(choice)


def remove_partial(out_path):
    """Temporary files write_image may leave for ``out_path`` when interrupted mid-write."""
    folder, name = os.path.split(os.path.abspath(out_path))
    for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
        try:
            os.remove(tmp)
        except OSError:
            pass


def _rgb_view_of_bgr_in_place(pixels):
    """Swaps an RGB uint8/uint16 image to BGR in place (band by band, no full-size copy) and
    returns an RGB-ordered *view* of it. write_image flips RGB to BGR for OpenCV; given this view,
    its flip is the contiguous array itself, so the encoder needs no second full-size copy
    (144 MB less for an 8000x6000 photo)."""
    for r0 in range(0, pixels.shape[0], 256):
        band = pixels[r0:r0 + 256]
        band[...] = band[:, :, ::-1].copy()
    return pixels[:, :, ::-1]


class Progress:
    """A tqdm bar counting images in fractions: tiles (or DCP strips) of the current image move it."""

    def __init__(self, total, desc, disable):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="image", disable=disable, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total} images "
                                   "[{elapsed}<{remaining}{postfix}]")
        self.index = 0
        self.name = ""

    def start(self, index, name):
        self.index, self.name = index, name
        self.bar.set_postfix_str(name, refresh=False)
        self.bar.n = index
        self.bar.refresh()

    def tiles(self, done, total):
        self.bar.n = self.index + (done / total if total else 1)
        if total > 1:
            self.bar.set_postfix_str(f"{self.name}: part {done}/{total}", refresh=False)
        self.bar.refresh()

    def write(self, message):
        self.bar.write(message, file=sys.stderr)

    def close(self):
        self.bar.n = self.bar.total
        self.bar.close()


def run(args):
    import numpy as np

    from keras_dehaze.commands.common import load_model
    from keras_dehaze.data.image_io import ImageReadError, ImageWriteError, read_image_raw, write_image
    from keras_dehaze.edge_runner import collect_inputs, output_paths

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
    try:  # only once the model loaded: a bad model leaves no empty output folder behind
        os.makedirs(args.output, exist_ok=True)
    except OSError as e:
        print(f"error: cannot create the output folder {args.output} ({e.strerror or e})", file=sys.stderr)
        return 2
    failed, refused, written = len(errors), 0, 0
    progress = Progress(len(files), f"dehazing with {dehazer.name}", disable=args.quiet)
    current = None
    try:
        for index, (path, (out, problem)) in enumerate(zip(files, output_paths(files, args.output))):
            progress.start(index, os.path.basename(path))
            if problem:
                progress.write(f"error: {problem}")
                failed += 1
                continue
            if os.path.lexists(out) and not args.overwrite:
                progress.write(f"error: {out} already exists: not overwritten (give --overwrite to replace it); "
                               f"skipped {path}")
                refused += 1
                continue
            try:  # stored depth in, 8/16-bit pixels out: no full-size float copies of huge photos
                image = read_image_raw(path)
                bit_depth = output_bit_depth(args.bit_depth, image)
                dtype = np.uint8 if bit_depth == 8 else np.uint16
                result = dehazer(image, dtype=dtype, progress=progress.tiles)
                del image  # freed before the PNG is encoded
                current = out
                write_image(out, _rgb_view_of_bgr_in_place(result), bit_depth)
                current = None
                del result
                written += 1
            except (ImageReadError, ImageWriteError, ValueError, OSError) as e:
                progress.write(f"error: {problem_text(path, e)}")  # skip it, keep going
                failed += 1
    except KeyboardInterrupt:
        progress.bar.close()
        if current is not None:
            remove_partial(current)
        print(f"{written} image(s) written to {args.output} before the interruption", file=sys.stderr)
        raise
    progress.close()
    summary = f"{written} image(s) written to {args.output}"
    if failed:
        summary += f"; {failed} failed"
    if refused:
        summary += f"; {refused} not overwritten (already exist; --overwrite replaces them)"
    print(summary)
    return 1 if failed or refused else 0
