"""The one loop that dehazes image files: inputs in, ``OUTDIR/<stem>_dehazed.png`` out.

Both front doors run it: ``keras-dehaze dehaze`` (``keras_dehaze.commands.dehaze``; any model,
a progress bar, ``--overwrite``) and the on-device runner (``keras_dehaze.edge.runner``, i.e.
``edge/infer.py``; ``.tflite`` only, one line per image). They differ in their options, messages
and exit codes, not in what happens to a file:

* inputs are files, folders (their images; sub-folders with ``recursive``) or glob patterns
  (``collect_inputs``); each gets ``OUTDIR/<stem>_dehazed.png`` (``_2``, ``_3``... when two
  inputs share a stem), and an output path that is one of the inputs is refused
  (``output_paths``): inputs are never overwritten;
* an existing output is refused unless ``overwrite``;
* each image is read in its stored depth (``read_image_raw``), dehazed straight to 8/16-bit
  pixels, and written atomically (``write_image``): no full-size float copy of a huge photo;
* a file that cannot be read, run or written is reported and skipped, the others go on;
* Ctrl-C stops at once, leaves no partial output file (the atomic write removes its temporary
  file), says how many images were written, and re-raises ``KeyboardInterrupt`` for the front
  door to exit with status 130.

numpy and OpenCV only (no TensorFlow): the model is a callable given by the caller.
"""

import glob
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from keras_dehaze.data.image_io import IMAGE_EXTENSIONS, read_image_raw, write_image

__all__ = ["Outcome", "Progress", "collect_inputs", "dehaze_files", "output_bit_depth", "output_paths",
           "problem_text"]

# Errors that belong to one file (reported by their message); anything else is reported with
# its type name too, and the file is skipped all the same.
_FILE_ERRORS = (ValueError, OSError)


def collect_inputs(specs, recursive=False):
    """Expands files, folders and glob patterns. Returns ``(files, errors)`` (no duplicates)."""
    files, errors = [], []
    for spec in specs:
        spec = os.fspath(spec)
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
    the inputs (or a hard link to one) is refused (None, reason).
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


def output_bit_depth(choice, image):
    """``--bit-depth``: "8", "16" or "auto" (16 for 16-bit and float inputs, else 8)."""
    if choice == "auto":
        return 8 if image.dtype.itemsize == 1 else 16
    return int(choice)


def problem_text(path, error):
    """One line per problem: the path once, then what is wrong (the messages of
    keras_dehaze.data.image_io already start with the path). Errors other than ValueError /
    OSError (a failing model run, say) are named with their type."""
    message = str(error).strip() or type(error).__name__
    if not isinstance(error, _FILE_ERRORS):
        message = f"{type(error).__name__}: {message}"
    return message if str(path) in message else f"{path}: {message}"


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
    """What the loop reports; this base class reports errors on stderr and nothing else.

    A front door subclasses it: a progress bar (``keras-dehaze dehaze``), one line per image
    (the edge runner).
    """

    def start(self, index, path):
        """Image ``index`` (0-based) of the list, ``path``, is next."""

    def tiles(self, done, total):
        """``done`` of ``total`` model runs (tiles, strips) of the current image are finished."""

    def error(self, message):
        """A problem with one file (already counted); ``message`` names the file."""
        print(f"error: {message}", file=sys.stderr)

    def written(self, path, out_path, size, seconds):
        """``path`` was dehazed (``size`` = (height, width), model time ``seconds``) into
        ``out_path``."""

    def close(self, interrupted=False):
        """The loop ended (``interrupted``: by Ctrl-C)."""


@dataclass
class Outcome:
    """What the loop did: images ``written``, files that ``failed`` (unreadable, refused as
    an input, failed to run or write), outputs ``refused`` because they exist."""

    written: int = 0
    failed: int = 0
    refused: int = 0


def dehaze_files(files, outdir, dehaze, bit_depth="auto", overwrite=False, progress=None):
    """Dehazes ``files`` into ``outdir`` (which must exist) one at a time.

    Args:
        files: image paths (``collect_inputs``).
        outdir: the output folder.
        dehaze: ``dehaze(image, dtype=..., progress=...)``: an RGB image (H, W, 3) as
            ``read_image_raw`` returns it (uint8, uint16 or float32) -> its dehazed version as
            ``dtype`` pixels (uint8 or uint16), same size; ``progress(done, total)`` after each
            tile. Every dehazer of ``keras_dehaze.inference`` and ``TFLiteDehazer`` is one.
        bit_depth: "8", "16" or "auto" (the input's depth: 16 for 16-bit and float inputs).
        overwrite: replace existing outputs (False: refuse them, counted in ``refused``).
        progress: a ``Progress`` (None: errors on stderr only).

    Returns:
        ``Outcome``. On Ctrl-C: prints how many images were written, re-raises
        ``KeyboardInterrupt``; no partial output file is left.
    """
    progress = progress or Progress()
    outcome = Outcome()
    try:
        for index, (path, (out_path, problem)) in enumerate(zip(files, output_paths(files, outdir))):
            progress.start(index, path)
            if problem:
                progress.error(problem)
                outcome.failed += 1
                continue
            if not overwrite and os.path.lexists(out_path):
                progress.error(f"{out_path} already exists: not overwritten (give --overwrite to "
                               f"replace it); skipped {path}")
                outcome.refused += 1
                continue
            try:  # stored depth in, 8/16-bit pixels out: no full-size float copies of huge photos
                image = read_image_raw(path)
                depth = output_bit_depth(bit_depth, image)
                start = time.perf_counter()
                result = dehaze(image, dtype=np.uint8 if depth == 8 else np.uint16,
                                progress=progress.tiles)
                seconds = time.perf_counter() - start
                size = image.shape[:2]
                del image  # freed before the PNG is encoded
                write_image(out_path, _rgb_view_of_bgr_in_place(result), depth)
                del result
            except Exception as e:  # noqa: BLE001  one bad file must not stop the others
                progress.error(problem_text(path, e))
                outcome.failed += 1
                continue
            outcome.written += 1
            progress.written(path, out_path, size, seconds)
    except KeyboardInterrupt:
        progress.close(interrupted=True)
        print(f"{outcome.written} image(s) written to {outdir} before the interruption", file=sys.stderr)
        raise
    progress.close()
    return outcome
