#!/usr/bin/env python3
"""Are LKD-Net tiles faithful when they get the whole image's statistics? A measurement.

    python scripts/measure_tile_statistics.py PAIR_HAZY [PAIR_HAZY ...] [--model lkdnet_s_mixed]
        [--megapixels 1.0 0.5 0.18] [--tiles 768 512]

Each hazy image's ground truth is the file of the same name in ``../clear/``. LKD-Net has
image-wide statistics in its ImageLayerNorm layers (mean and variance over H, W, C) and its
global average pooling (channel attention, SK fusion), so a tile of a photo is normalised
with its own statistics. Here the Keras network (float) is run:

* on the whole image (the reference);
* in tiles (``keras_dehaze.tiling.dehaze_tiled``, overlap 96) with their own statistics;
* in tiles whose every statistic is replaced by one recorded from a whole-image pass, at full
  resolution (the upper bound of the idea) and at each of ``--megapixels``.

For the measurement only, ``ImageLayerNorm.call`` and ``GlobalAveragePooling2D.call`` are
replaced by versions that record or replay their statistics (eager execution). Prints PSNR to
the ground truth and to the whole-image output. Needs about 3 GB for a 1600x1200 photo.
"""

import argparse
import os

import cv2
import numpy as np

from keras_dehaze import pretrained, tiling
from keras_dehaze.backend import keras, tf
from keras_dehaze.data.image_io import read_image
from keras_dehaze.layers.lkd import ImageLayerNorm

STATE = {"mode": "own", "stats": {}}  # mode: own (normal), record, replay


def _layer_norm(self, x):
    if STATE["mode"] == "replay":
        mean, var = STATE["stats"][self.name]
    else:
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        var = tf.reduce_mean(tf.square(x - mean), axis=[1, 2, 3], keepdims=True)
        if STATE["mode"] == "record":
            STATE["stats"][self.name] = (mean, var)
    return (x - mean) * (tf.math.rsqrt(var + self.epsilon) * self.weight) + self.bias


def _global_pool(self, x):
    if STATE["mode"] == "replay":
        return STATE["stats"][self.name]
    pooled = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    if STATE["mode"] == "record":
        STATE["stats"][self.name] = pooled
    return pooled


def psnr(a, b):
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def downscaled(image, megapixels):
    h, w = image.shape[:2]
    scale = (megapixels * 1e6 / (h * w)) ** 0.5
    size = (max(4, int(w * scale) // 4 * 4), max(4, int(h * scale) // 4 * 4))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hazy", nargs="+")
    parser.add_argument("--model", default="lkdnet_s_mixed")
    parser.add_argument("--megapixels", nargs="+", type=float, default=[1.0, 0.5, 0.18])
    parser.add_argument("--tiles", nargs="+", type=int, default=[768, 512])
    args = parser.parse_args(argv)

    ImageLayerNorm.call = _layer_norm
    keras.layers.GlobalAveragePooling2D.call = _global_pool
    model = pretrained.load_pretrained(args.model)

    def run(batch):
        return model(tf.constant(batch), training=False).numpy()

    print("| image | run | PSNR to GT | PSNR to whole image |")
    print("|---|---|---|---|")
    for path in args.hazy:
        hazy = read_image(path)
        clear = read_image(os.path.join(os.path.dirname(os.path.dirname(path)), "clear", os.path.basename(path)))
        STATE["mode"] = "own"
        whole = run(hazy[None])[0]
        rows = [("whole image", whole)]
        rows += [(f"tiles {t}, own statistics", tiling.dehaze_tiled(hazy, run, t, 96, 4)) for t in args.tiles]
        for mp in [None] + args.megapixels:
            STATE["mode"], STATE["stats"] = "record", {}
            run((hazy if mp is None else downscaled(hazy, mp))[None])
            STATE["mode"] = "replay"
            source = "full resolution" if mp is None else f"{mp:g} MP"
            rows += [(f"tiles {t}, statistics of the whole image at {source}", tiling.dehaze_tiled(hazy, run, t, 96, 4))
                     for t in args.tiles]
        STATE["mode"] = "own"
        for name, out in rows:
            print(f"| {os.path.basename(path)} | {name} | {psnr(out, clear):.3f} | {psnr(out, whole):.2f} |", flush=True)


if __name__ == "__main__":
    main()
