#!/usr/bin/env python3
"""PSNR of large-photo inference at working resolutions against full resolution.

    python scripts/measure_working_resolution.py --data data [--model lkdnet_s_mixed]
        [--precision float|int8] [--megapixels 0.15 0.2 0.3]

For each pair (held-out SOTS-indoor scenes 1425-1429 at haze levels 1/5/10, held-out SOTS-outdoor
scenes, the Dense-Haze and NH-HAZE2 pairs under DATA), the network is run (1) on the whole image
at full resolution (one run, however large: the reference) and (2) through
``keras_dehaze.guided_upsampling.GuidedDehazer`` at each working resolution, exactly as
``keras-dehaze dehaze --work-megapixels MP`` runs it, and (3) in full-resolution tiles as
``--work-megapixels 0`` runs it (the dehazer's default tile budget). Prints mean PSNR to the ground
truth per set, and PSNR of each working resolution and of the tiles to the full-resolution output.
"""

import argparse
import glob
import os

import numpy as np

from keras_dehaze.data.image_io import read_image
from keras_dehaze.guided_upsampling import GuidedDehazer
from keras_dehaze.inference import load_dehazer

INDOOR = ["1425", "1426", "1427", "1428", "1429"]
OUTDOOR = ["0001", "0002", "0003", "0004", "0006", "0007", "0009", "0010"]


def pairs(data):
    out = []
    for scene in INDOOR:
        for level in (1, 5, 10):
            out.append(("sots-indoor", f"{data}/sots-indoor/hazy/{scene}_{level}.png",
                        f"{data}/sots-indoor/clear/{scene}.png"))
    for scene in OUTDOOR:
        hazy = sorted(glob.glob(f"{data}/sots-outdoor/hazy/{scene}_*"))
        clear = glob.glob(f"{data}/sots-outdoor/clear/{scene}.*")
        if hazy and clear:
            out.append(("sots-outdoor", hazy[0], clear[0]))
    for name in ("dense-haze", "nh-haze2"):
        for hazy in sorted(glob.glob(f"{data}/{name}/hazy/*")):
            clear = os.path.join(f"{data}/{name}/clear", os.path.basename(hazy))
            out.append((name, hazy, clear))
    return [p for p in out if os.path.isfile(p[1]) and os.path.isfile(p[2])]


def psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder holding sots-indoor, sots-outdoor, dense-haze, nh-haze2")
    parser.add_argument("--model", default=None, help="preset name or model file (default: the default preset)")
    parser.add_argument("--precision", default="float", choices=("float", "int8"))
    parser.add_argument("--megapixels", nargs="+", type=float, default=[0.15, 0.2, 0.3])
    args = parser.parse_args(argv)

    full = load_dehazer(args.model, precision=args.precision)
    if hasattr(full, "max_pixels"):
        full.max_pixels = 10 ** 9  # the reference: one run of the whole image
    if isinstance(getattr(full, "tile", None), int):
        full.tile = 10 ** 6
    tiled = load_dehazer(args.model, precision=args.precision)
    guided = {mp: GuidedDehazer(full, int(mp * 1e6)) for mp in args.megapixels}
    scores = {}
    for kind, hazy_path, clear_path in pairs(args.data):
        hazy, clear = read_image(hazy_path), read_image(clear_path)
        clear = clear[:hazy.shape[0], :hazy.shape[1]]
        reference = full(hazy)
        scores.setdefault((kind, "hazy input"), []).append(psnr(hazy, clear))
        scores.setdefault((kind, "full resolution"), []).append(psnr(reference, clear))
        out = tiled(hazy)
        scores.setdefault((kind, "tiles (--work-megapixels 0)"), []).append(psnr(out, clear))
        scores.setdefault((kind, "tiles vs full resolution"), []).append(psnr(out, reference))
        for mp in args.megapixels:
            out = guided[mp](hazy)
            scores.setdefault((kind, f"{mp:g} MP"), []).append(psnr(out, clear))
            scores.setdefault((kind, f"{mp:g} MP vs full resolution"), []).append(psnr(out, reference))
    print(f"model {full.name}; PSNR (dB), mean over the images of each set")
    print("| set | run | PSNR | images |")
    print("|---|---|---|---|")
    for (kind, run), values in scores.items():
        print(f"| {kind} | {run} | {np.mean(values):.2f} | {len(values)} |")


if __name__ == "__main__":
    main()
