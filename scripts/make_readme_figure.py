"""Before/after figure for the README: hazy | dehazed, one row per photo, with labels.

    python scripts/make_readme_figure.py photo1.jpg photo2.png ... \
        -o docs/figures/before_after.jpg [--model NAME_OR_FILE] [--max-side 400]

Each photo is downscaled so its longer side is at most --max-side pixels *before* dehazing (the
figure is small anyway, and this keeps the run short on a CPU), dehazed with --model (default:
the package's default preset, as `keras-dehaze dehaze` without --model), and the pairs are
stacked into one JPEG. The photos themselves are only read, never copied.
"""

import argparse
import os
import sys

import cv2
import numpy as np

from keras_dehaze import pretrained, quiet
from keras_dehaze.data.image_io import read_image, write_image
from keras_dehaze.inference import load_dehazer, resolve_name

GAP = 6
LABEL_H = 26


def downscale(image, max_side):
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return image


def label(image, text):
    """``image`` with a white band above it holding ``text``."""
    band = np.full((LABEL_H, image.shape[1], 3), 255, np.uint8)  # putText draws on 8-bit images only
    cv2.putText(band, text, (6, LABEL_H - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band.astype(np.float32) / 255.0, image], axis=0)


def fit_width(image, width):
    h, w = image.shape[:2]
    return cv2.resize(image, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="+", help="hazy photos (read only)")
    parser.add_argument("-o", "--output", default="docs/figures/before_after.jpg")
    parser.add_argument("--model", default=None,
                        help=f"preset name or .keras/.tflite file (default: {pretrained.DEFAULT})")
    parser.add_argument("--max-side", type=int, default=400, help="longer side of each panel, pixels")
    parser.add_argument("--quality", type=int, default=82, help="JPEG quality of the figure")
    args = parser.parse_args(argv)
    quiet.configure(verbose=False)  # hide TensorFlow's log lines, as the keras-dehaze command does

    model_name = resolve_name(args.model or pretrained.DEFAULT)
    dehazer = load_dehazer(args.model)
    label_model = os.path.basename(model_name)
    panel_w = None
    rows = []
    for path in args.photos:
        hazy = downscale(read_image(path), args.max_side)
        if panel_w is None:
            panel_w = hazy.shape[1]
        hazy = fit_width(hazy, panel_w)  # every row the same width
        out = np.clip(dehazer(hazy), 0.0, 1.0).astype(np.float32)
        name = os.path.basename(path)
        gap = np.ones((hazy.shape[0] + LABEL_H, GAP, 3), np.float32)
        rows.append(np.concatenate([label(hazy, f"hazy: {name}"), gap, label(out, f"dehazed: {label_model}")], axis=1))
        print(f"{name}: {hazy.shape[1]}x{hazy.shape[0]}", flush=True)
    spacer = np.ones((GAP, rows[0].shape[1], 3), np.float32)
    grid = np.concatenate([part for row in rows for part in (row, spacer)][:-1], axis=0)
    write_image(args.output, grid, quality=args.quality)
    print(f"wrote {args.output} ({os.path.getsize(args.output) // 1024} KB, {grid.shape[1]}x{grid.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
