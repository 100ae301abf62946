"""How much of a benchmark pair a global colour correction can explain.

For each pair, fits the best per-channel affine map ``a_c * hazy_c + b_c`` to the ground truth
(least squares, an oracle: it sees the GT) and prints its PSNR/SSIM next to the hazy input's.
When the oracle is close to what a dehazer scores, PSNR on that pair mostly measures global
tone, not recovered structure (e.g. Dense-Haze, where the haze leaves almost no detail).

    python training/affine_oracle.py data/dense-haze data/nh-haze2
"""

import argparse
import os
import sys

import numpy as np

from keras_dehaze.data import find_pairs
from keras_dehaze.data.image_io import read_image
from keras_dehaze.metrics.full_reference import psnr, ssim


def affine_oracle(hazy, clear):
    """The per-channel least-squares fit of ``clear`` by ``a * hazy + b``, clipped to [0, 1]."""
    fitted = np.empty_like(clear, dtype=np.float64)
    for c in range(clear.shape[-1]):
        x, y = hazy[..., c].ravel().astype(np.float64), clear[..., c].ravel().astype(np.float64)
        design = np.stack([x, np.ones_like(x)], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
        fitted[..., c] = a * hazy[..., c] + b
    return np.clip(fitted, 0.0, 1.0).astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="paired benchmark folders (RESIDE, {GT,hazy} or NTIRE)")
    args = parser.parse_args(argv)
    print("PSNR on RGB in [0,1], whole image; SSIM Gaussian 11/1.5 (same as keras-dehaze eval)")
    print(f"{'pair':40s} {'hazy PSNR/SSIM':>16s} {'affine oracle':>16s}")
    for folder in args.folders:
        for pair in find_pairs(folder):
            hazy, clear = read_image(pair.hazy), read_image(pair.clear)
            fitted = affine_oracle(hazy, clear)
            name = os.path.join(os.path.basename(os.path.normpath(folder)), os.path.basename(pair.hazy))
            print(f"{name:40s} {psnr(hazy, clear):7.2f} / {ssim(hazy, clear):.4f} "
                  f"{psnr(fitted, clear):7.2f} / {ssim(fitted, clear):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
