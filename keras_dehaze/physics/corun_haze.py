"""CORUN's online haze synthesis for pretraining (reference ``HazeOnlineDataset``), as batched TF ops.

From a clean image J and a relative depth map the reference code draws per image

    beta ~ U(0.2, 2.8),  t = exp(-2 beta (1 - d_norm)),  A ~ U(0.25, 1.0) + U(-0.025, 0.025)^3,

with d_norm the depth map min-max normalised per image. ``(1 - d_norm)`` is the distance, so
the maps are "nearness" maps (inverse depth / disparity, as monocular depth networks such as
MiDaS/DPT output, and the RIDCP depth set the reference uses): d_norm = 1 is the nearest point
(t = 1), d_norm = 0 the farthest (t = exp(-2 beta)). Before hazing, with probability 0.5 each,
the clean image is darkened by a gamma J^g, g ~ U(1.5, 3.0), and gets Gaussian noise; after
hazing, with probability 0.5, JPEG compression (quality 30..95). The ground truth stays the
unmodified clean image, so the network also learns to undo these degradations.

The ASM itself is ``keras_dehaze.physics.scattering`` (``transmission``, ``synthesize_haze``):
CORUN's law is the ASM with depth ``2 (1 - d_norm)``.

Example:
    >>> out = random_corun_haze(clear, disparity, seed=0)
    >>> out["hazy"], out["transmission"], out["airlight"], out["beta"]

Reference:
    github.com/cnyvfang/CORUN-Colabator, ``HazeOnlineDataset`` and
    dehazing_options/train_corun_by_depth.yml (beta_range [0.2, 2.8], A_range [0.25, 1.0],
    color_range [-0.025, 0.025], color_p 1.0).
"""

from keras_dehaze.backend import tf
from keras_dehaze.physics.scattering import _as_seed, _float, sample_haze_params, synthesize_haze, transmission

# Reference sampling ranges and degradation probabilities.
CORUN_HAZE = dict(
    beta=(0.2, 2.8),
    airlight=(0.25, 1.0),
    airlight_jitter=0.025,
    gamma=(1.5, 3.0),
    gamma_p=0.5,
    noise_p=0.5,
    noise_level=(2, 25),  # in 8-bit units; the correlated mode uses the upper value
    jpeg_p=0.5,
    jpeg_quality=(30, 95),
)


def corun_depth(disparity, normalize=True):
    """The ASM depth of CORUN's law, ``2 (1 - d_norm)``, d_norm = per-image min-max of the map.

    normalize=False takes the maps as already normalised to [0, 1]. The reference normalises
    each whole image before cropping; min-max over a crop instead would give every crop a
    haze-free nearest point, so crops of distant scenery would never be densely hazed.
    """
    d = _float(disparity)
    if not normalize:
        return 2.0 * (1.0 - d)
    lo = tf.reduce_min(d, axis=[1, 2, 3], keepdims=True)
    hi = tf.reduce_max(d, axis=[1, 2, 3], keepdims=True)
    return 2.0 * (1.0 - (d - lo) / tf.maximum(hi - lo, 1e-12))


def corun_transmission(disparity, beta):
    """``t = exp(-2 beta (1 - d_norm))``, [B, H, W, 1]; beta scalar or [B]."""
    return transmission(corun_depth(disparity), beta)


def sample_corun_haze_params(batch_size, beta_range=CORUN_HAZE["beta"], airlight_range=CORUN_HAZE["airlight"],
                             airlight_jitter=CORUN_HAZE["airlight_jitter"], seed=None):
    """Draws (airlight [B, 3], beta [B]): A ~ U(airlight_range) per image plus U(-j, j) per channel.

    seed: None (global RNG) or a stateless seed (int or [2] ints).
    """
    seeds = _seeds(seed, 2)
    airlight, beta = sample_haze_params(batch_size, airlight_range, beta_range, seed=seeds[0])
    jitter = tf.random.stateless_uniform([batch_size, 3], seeds[1], -airlight_jitter, airlight_jitter)
    return airlight[:, None] + jitter, beta


def synthesize_corun_haze(clear, disparity, airlight, beta, normalize=True):
    """Hazes clean images with CORUN's law; returns (hazy [B,H,W,C], transmission [B,H,W,1])."""
    depth = corun_depth(disparity, normalize)
    return synthesize_haze(clear, depth, airlight, beta), transmission(depth, beta)


def random_corun_haze(clear, disparity, seed=None, degrade=True, clip=True, normalize=True, **ranges):
    """The reference's full online synthesis for a batch: degradations + haze + JPEG.

    Args:
        clear: clean images [B, H, W, 3] in [0, 1] (the ground truth; returned unchanged).
        disparity: nearness maps [B, H, W, 1] (any scale; normalised per image).
        normalize: min-max normalise each map here; False for crops of maps normalised over the
            whole image beforehand (what the reference does, see `corun_depth`).
        seed: None (global RNG) or a stateless seed (int or [2] ints): same seed, same output.
        degrade: apply the gamma / noise / JPEG degradations (reference: True).
        clip: clip the hazy image to [0, 1]. The reference does not (A + jitter can exceed 1
            slightly, only JPEG clips); CORUN's steps assume images in [0, 1].
        **ranges: overrides of ``CORUN_HAZE`` entries.

    Returns:
        dict with "hazy" [B,H,W,3], "clear", "transmission" [B,H,W,1], "airlight" [B,3],
        "beta" [B].
    """
    cfg = {**CORUN_HAZE, **ranges}
    unknown = set(ranges) - set(CORUN_HAZE)
    if unknown:
        raise ValueError(f"unknown CORUN haze settings {sorted(unknown)}; known: {sorted(CORUN_HAZE)}")
    clear = _float(clear)
    batch = tf.shape(clear)[0]
    s = _seeds(seed, 7)
    airlight, beta = sample_corun_haze_params(batch, cfg["beta"], cfg["airlight"], cfg["airlight_jitter"], s[0])
    lq = clear
    if degrade:
        lq = _random_gamma(lq, cfg["gamma"], cfg["gamma_p"], s[1], s[2])
        lq = _random_noise(lq, cfg["noise_level"], cfg["noise_p"], s[3], s[4])
    hazy, t = synthesize_corun_haze(lq, disparity, airlight, beta, normalize)
    if degrade:
        hazy = _random_jpeg(hazy, cfg["jpeg_quality"], cfg["jpeg_p"], s[5], s[6])
    if clip:
        hazy = tf.clip_by_value(hazy, 0.0, 1.0)
    return {"hazy": hazy, "clear": clear, "transmission": t, "airlight": airlight, "beta": beta}


def _seeds(seed, n):
    """n independent stateless seeds; seed None draws one from the global RNG first."""
    if seed is None:
        seed = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int32)
    return tf.unstack(tf.random.split(_as_seed(seed), n))


def _bernoulli(batch, p, seed):
    """[B, 1, 1, 1] float mask, 1 with probability p."""
    return tf.cast(tf.random.stateless_uniform([batch, 1, 1, 1], seed) < p, tf.float32)


def _random_gamma(img, gamma_range, p, seed_apply, seed_value):
    batch = tf.shape(img)[0]
    g = tf.random.stateless_uniform([batch, 1, 1, 1], seed_value, *gamma_range)
    g = 1.0 + _bernoulli(batch, p, seed_apply) * (g - 1.0)  # exponent 1 = unchanged
    return tf.pow(tf.maximum(img, 0.0), g)


def _random_noise(img, level_range, p, seed_apply, seed_noise):
    """Reference ``add_Gaussian_noise``: colour (40%), grey (40%) or channel-correlated (20%) noise."""
    batch = tf.shape(img)[0]
    s = tf.unstack(tf.random.split(seed_noise, 5))
    lo, hi = level_range
    sigma = tf.cast(tf.random.stateless_uniform([batch, 1, 1, 1], s[0], lo, hi + 1, dtype=tf.int32), tf.float32) / 255.0
    mode = tf.random.stateless_uniform([batch, 1, 1, 1], s[1])
    colour = tf.random.stateless_normal(tf.shape(img), s[2]) * sigma
    grey = tf.random.stateless_normal(tf.shape(img[..., :1]), s[3]) * sigma
    # Correlated: covariance L^2 U^T D U, U = Q of a random matrix, D ~ U(0,1)^3, L = hi/255.
    s_u, s_d, s_z = tf.unstack(tf.random.split(s[4], 3))
    u, _ = tf.linalg.qr(tf.random.stateless_uniform([batch, 3, 3], s_u))
    d = tf.random.stateless_uniform([batch, 1, 3], s_d)
    z = tf.random.stateless_normal([batch, tf.shape(img)[1] * tf.shape(img)[2], 3], s_z)
    corr = tf.reshape(tf.matmul(z * tf.sqrt(d), u), tf.shape(img)) * (hi / 255.0)
    noise = tf.where(mode > 0.6, colour, tf.where(mode < 0.4, grey + tf.zeros_like(img), corr))
    noisy = tf.clip_by_value(img + noise, 0.0, 1.0)
    apply = _bernoulli(batch, p, seed_apply)
    return apply * noisy + (1.0 - apply) * img


def _random_jpeg(img, quality_range, p, seed_apply, seed_quality):
    batch = tf.shape(img)[0]
    lo, hi = quality_range
    quality = tf.random.stateless_uniform([batch], seed_quality, lo, hi + 1, dtype=tf.int32)
    apply = tf.random.stateless_uniform([batch], seed_apply) < p

    def one(args):
        image, q, use = args
        return tf.cond(use, lambda: tf.image.adjust_jpeg_quality(image, q), lambda: image)

    return tf.map_fn(one, (img, quality, apply), fn_output_signature=tf.float32)


__all__ = [
    "CORUN_HAZE",
    "corun_depth",
    "corun_transmission",
    "sample_corun_haze_params",
    "synthesize_corun_haze",
    "random_corun_haze",
]
