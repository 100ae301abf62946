"""Physics re-synthesis: new haze levels and airlights for the clear images of a paired set.

From each hazy/clear pair the transmission is recovered by inverting the atmospheric scattering
model (ASM), giving a relative depth map per scene; training then synthesises new hazy images
``I = J t + A (1 - t)``, ``t = exp(-beta * d)``, with A and beta drawn per image. This multiplies a
small paired set (e.g. the SOTS subsets) into a continuum of haze densities and airlights.

* SOTS-outdoor names carry A and beta (``<id>_<A>_<beta>.jpg``): t from the pair, d = -ln(t)/beta.
* Other pairs (SOTS-indoor): A is unknown; it is chosen from a grid as the value whose
  least-squares t best reproduces the hazy image, then d = -ln(t) (relative).
Depth is smoothed with a guided filter (guide: the clear image) and normalised to [0, 1] by its
99th percentile, then cached as a 16-bit PNG per scene.
"""

import os

import numpy as np

from keras_dehaze.data.image_io import read_image, write_image
from keras_dehaze.data.pairing import Pair
from keras_dehaze.physics.dcp import guided_filter, parse_sots_outdoor_name, recover_transmission_from_pair

AIRLIGHT_GRID = np.linspace(0.6, 1.0, 21)


def _fit_airlight(hazy, clear):
    """Airlight whose least-squares transmission best explains the pair (mean abs residual)."""
    best = None
    for a in AIRLIGHT_GRID:
        t, mask = recover_transmission_from_pair(hazy, clear, a)
        pred = clear * t[..., None] + a * (1.0 - t[..., None])
        err = float(np.abs(pred - hazy)[mask].mean()) if mask.any() else np.inf
        if best is None or err < best[0]:
            best = (err, a, t)
    return best[1], best[2]


def depth_from_pair(hazy, clear, hazy_name=""):
    """Relative depth in [0, 1] (HxW float32) recovered from one hazy/clear pair."""
    try:
        _, airlight, beta = parse_sots_outdoor_name(hazy_name)
        t, _ = recover_transmission_from_pair(hazy, clear, airlight)
    except ValueError:
        airlight, t = _fit_airlight(hazy, clear)
        beta = 1.0
    depth = -np.log(np.clip(t, 1e-3, 1.0)) / beta
    depth = guided_filter(clear, depth, radius=8, eps=1e-3)  # remove per-pixel noise, keep edges
    scale = np.percentile(depth, 99)
    return np.clip(depth / max(scale, 1e-6), 0.0, 1.0).astype(np.float32)


def prepare_depth_maps(pairs, cache_dir):
    """One cached depth map per scene (first pair of the scene); returns Pair(depth, clear).

    The ``hazy`` field of each returned Pair holds the depth PNG path, so the regular paired
    pipeline crops and flips depth and clear image together.
    """
    os.makedirs(cache_dir, exist_ok=True)
    by_scene = {}
    for pair in pairs:
        by_scene.setdefault(pair.scene, pair)
    result = []
    for scene, pair in sorted(by_scene.items()):
        path = os.path.join(cache_dir, f"{scene}_depth.png")
        if not os.path.exists(path):
            hazy, clear = read_image(pair.hazy), read_image(pair.clear)
            if hazy.shape != clear.shape:
                raise ValueError(f"{pair.hazy} {hazy.shape[:2]} and {pair.clear} {clear.shape[:2]} differ in size")
            write_image(path, depth_from_pair(hazy, clear, os.path.basename(pair.hazy)), bit_depth=16)
        result.append(Pair(hazy=path, clear=pair.clear, scene=scene))
    return result


def smooth_field(batch, height, width, seed, grid=4):
    """Smooth random fields in [-1, 1], [B, H, W, 1]: a grid x grid uniform noise, upsampled bicubically."""
    from keras_dehaze.backend import tf

    coarse = tf.random.stateless_uniform([batch, grid, grid, 1], seed, -1.0, 1.0)
    return tf.clip_by_value(tf.image.resize(coarse, [height, width], method="bicubic"), -1.0, 1.0)


def haze_depth(depth, offset, field, nonuniform, scale=1.0):
    """Depth the haze acts on: ``(offset + scale * d) * exp(nonuniform * field)``.

    The offset ([B]) hazes near objects too (dense haze: no pixel is clear); a scale ([B]) below 1
    flattens the scene's depth range, so the haze is nearly uniform (a haze machine filling a few
    metres, as in Dense-Haze); the field makes the density vary in soft patches (non-homogeneous
    haze), i.e. a spatially varying beta.
    """
    from keras_dehaze.backend import tf

    scale = tf.reshape(tf.cast(scale, depth.dtype), [-1, 1, 1, 1])
    return (tf.reshape(offset, [-1, 1, 1, 1]) + scale * depth) * tf.exp(nonuniform * field)


def resynthesized_dataset(depth_pairs, batch_size, crop_size, seed=0, airlight=(0.7, 1.0), beta=(0.3, 2.5),
                          airlight_jitter=0.025, depth_offset=(0.0, 0.0), nonuniform=0.0, depth_scale=(1.0, 1.0),
                          noise=0.0, cache=True):
    """Endless (hazy, clear) batches synthesised with the ASM from cached depth maps.

    A ~ U(airlight) per image plus a per-channel jitter of +-``airlight_jitter`` (slightly
    coloured haze), beta ~ U(beta) per image on depth normalised to [0, 1], applied to the
    `haze_depth` with offset ~ U(depth_offset), scale ~ U(depth_scale) and non-uniform strength
    ``nonuniform``. ``noise`` > 0 adds Gaussian sensor noise of std ~ U(0, noise) per image after
    hazing: real dense-haze photos are noisy, and a net that stretches contrast 3x must not
    stretch the noise with it.
    """
    from keras_dehaze.backend import tf
    from keras_dehaze.data.pipeline import paired_dataset
    from keras_dehaze.physics.scattering import synthesize_haze

    ds = paired_dataset(depth_pairs, batch_size, crop_size=crop_size, augment=True, shuffle=True,
                        seed=seed, repeat=True, cache=cache)

    def synthesize(index, batch):
        depth, clear = batch
        shape = tf.shape(clear)
        n = shape[0]
        s = tf.stack([tf.cast(seed, tf.int64), index])

        def key(i):
            return tf.random.experimental.stateless_fold_in(s, i)

        a = tf.random.stateless_uniform([n, 1], key(0), airlight[0], airlight[1])
        a = a + tf.random.stateless_uniform([n, 3], key(1), -airlight_jitter, airlight_jitter)
        b = tf.random.stateless_uniform([n], key(2), beta[0], beta[1])
        d = depth[..., :1]
        if depth_offset[1] > 0 or nonuniform > 0 or tuple(depth_scale) != (1.0, 1.0):
            offset = tf.random.stateless_uniform([n], key(3), depth_offset[0], depth_offset[1])
            scale = tf.random.stateless_uniform([n], key(5), depth_scale[0], depth_scale[1])
            d = haze_depth(d, offset, smooth_field(n, shape[1], shape[2], key(4)), nonuniform, scale)
        hazy = synthesize_haze(clear, d, tf.clip_by_value(a, 0.0, 1.0), b)
        if noise > 0:
            sigma = tf.random.stateless_uniform([n, 1, 1, 1], key(6), 0.0, noise)
            hazy = hazy + sigma * tf.random.stateless_normal(tf.shape(hazy), key(7))
        return tf.clip_by_value(hazy, 0.0, 1.0), clear

    return ds.enumerate().map(synthesize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
