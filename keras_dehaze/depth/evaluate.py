"""Agreement of depth estimators with measured depth: Spearman rank correlation per frame.

Relative depth (PyDNet++, the DCP prior) has no scale or offset, and haze synthesis only needs
the ORDER of distances to be right for t = exp(-beta d) to fall with distance, so the rank
correlation with sensor/stereo depth is the measure: +1 perfect order, 0 none, -1 reversed. It is
computed on the measured pixels only (holes of the sensor and stereo occlusions left out).

Usage (the shared RGB-D and Middlebury frames; nothing is written):

    python -m keras_dehaze.depth.evaluate --src /path/to/data/depth --pydnet /path/to/pydnet_plus_plus.tflite

Estimators compared: "pydnet" (if given), "dcp_prior" (the DCP haze prior of
`keras_dehaze.depth.prior`, run on the clean photo), and "rows" (a no-information reference:
depth grows from the bottom row to the top row, the ground-plane cue).
"""

import argparse
import os
import sys

import numpy as np

from keras_dehaze.data.image_io import read_image
from keras_dehaze.depth.dataset import clean_depth_pairs


def spearman(a, b):
    """Spearman rank correlation of two equally long 1-D arrays (ties get their mean rank)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def rows_prior(image):
    """The ground-plane reference: depth 1 at the top row, 0 at the bottom row."""
    h, w = image.shape[:2]
    return np.repeat(np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None], w, axis=1)


def dcp_prior(image):
    """The DCP haze prior d = -ln(t) of `DCPPriorDepth` on one image (needs TensorFlow)."""
    from keras_dehaze.depth.prior import DCPPriorDepth

    return DCPPriorDepth()(image[None]).numpy()[0, ..., 0]


def evaluate_depth(folder, estimators, max_pixels=200_000, seed=0):
    """Per-frame Spearman correlation of each estimator with the measured depth of `folder`.

    Args:
        folder: RGB-D / Middlebury folder(s) (see `clean_depth_pairs`).
        estimators: {name: fn(HxWx3 image in [0, 1]) -> HxW depth (larger = farther)}.
        max_pixels: valid pixels subsampled (fixed seed) above this count, to bound the time.

    Returns:
        A list of {"frame": path, "valid": fraction of measured pixels, name: rho, ...}.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for path, load in clean_depth_pairs(folder, with_valid=True):
        image = read_image(path)
        truth, valid = load()
        if truth.shape != image.shape[:2]:
            raise ValueError(f"{path}: depth {truth.shape} and image {image.shape[:2]} differ in size")
        index = np.flatnonzero(valid)
        if index.size > max_pixels:
            index = rng.choice(index, max_pixels, replace=False)
        row = {"frame": path, "valid": float(valid.mean())}
        for name, fn in estimators.items():
            pred = np.asarray(fn(image), np.float32)
            row[name] = spearman(pred.ravel()[index], truth.ravel()[index])
        rows.append(row)
    return rows


def format_table(rows, names, root=None):
    """Text table: one line per frame, then the mean per dataset folder (first level under root)."""
    lines = ["frame".ljust(28) + "valid  " + "  ".join(n.rjust(10) for n in names)]
    for r in rows:
        lines.append(os.path.basename(r["frame"]).ljust(28) + f"{r['valid']:.2f}   "
                     + "  ".join(f"{r[n]:+10.3f}" for n in names))
    groups = {}
    for r in rows:
        rel = os.path.relpath(r["frame"], root) if root else os.path.dirname(r["frame"])
        groups.setdefault(rel.split(os.sep)[0] if os.sep in rel else ".", []).append(r)
    for group, items in sorted(groups.items()):
        lines.append(f"mean {group} ({len(items)})".ljust(35)
                     + "  ".join(f"{np.mean([r[n] for r in items]):+10.3f}" for n in names))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="RGB-D / Middlebury folder (or a folder of them)")
    parser.add_argument("--pydnet", nargs="?", const="", default=None,
                        help="PyDNet++ .tflite (no value: $KERAS_DEHAZE_PYDNET or ~/.keras/models/)")
    parser.add_argument("--pydnet-output", default="depth", choices=["depth", "disparity"])
    parser.add_argument("--pydnet-scale", default="half", choices=["half", "quarter", "eighth"])
    parser.add_argument("--no-dcp", action="store_true", help="skip the DCP prior (it needs TensorFlow)")
    args = parser.parse_args(argv)
    estimators = {}
    if args.pydnet is not None:
        from keras_dehaze.depth.pydnet import PyDNetTFLite

        net = PyDNetTFLite(args.pydnet or None, scale=args.pydnet_scale, output=args.pydnet_output)
        print(net.describe(), flush=True)
        estimators["pydnet"] = net.depth
    if not args.no_dcp:
        estimators["dcp_prior"] = dcp_prior
    estimators["rows"] = rows_prior
    rows = evaluate_depth(args.src, estimators)
    print("Spearman rank correlation with measured depth (valid pixels only):")
    print(format_table(rows, list(estimators), args.src))
    print(f"mean all ({len(rows)})".ljust(35)
          + "  ".join(f"{np.mean([r[n] for r in rows]):+10.3f}" for n in estimators))
    return 0


if __name__ == "__main__":
    sys.exit(main())
