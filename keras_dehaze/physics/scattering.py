"""Atmospheric scattering model (ASM) and physics-based rehazy generation, as batched TF ops.

Conventions: images are NHWC float32 in [0, 1]; depth is [B, H, W, 1] (relative, any scale);
per-image parameters (beta, delta_beta, airlight) are scalars, shape [B], or for airlight also
per channel [B, C]. A per-channel airlight shared by the whole batch must be given as [1, C]
(a rank-1 tensor always means "one value per image"). Every op is differentiable.

ASM (Koschmieder; the Rehazy paper):  I = J t + A (1 - t),  t = exp(-beta d).
Rehazy (Rehazy paper, Sec. 3.2): a hazy image I0 with airlight A0 and depth d0 gets extra haze
delta_beta (and optionally extra airlight delta_A) without knowing its clean image J0.
"""

from keras_dehaze.backend import tf

# Sampling ranges from the Rehazy paper; Table 4: delta_beta U(0.1, 0.5) is best indoors.
PRESETS = {
    "indoor": dict(airlight=(0.7, 1.0), beta=(0.6, 1.8), delta_beta=(0.1, 0.5)),
    "outdoor": dict(airlight=(0.8, 1.0), beta=(0.01, 0.3), delta_beta=(0.01, 0.15)),
}


def _float(x):
    """Converts anything array-like to a float32 tensor (casting keeps gradients flowing)."""
    x = tf.convert_to_tensor(x)
    return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)


def _per_image(param):
    """Reshapes a per-image parameter so it broadcasts against [B, H, W, C] tensors.

    rank 0 -> scalar (shared); rank 1 [B] -> [B, 1, 1, 1]; rank 2 [B, C] -> [B, 1, 1, C].
    """
    param = _float(param)
    rank = param.shape.rank
    if rank == 0:
        return param
    if rank == 1:
        return tf.reshape(param, [-1, 1, 1, 1])
    if rank == 2:
        return tf.reshape(param, [tf.shape(param)[0], 1, 1, tf.shape(param)[1]])
    raise ValueError(f"per-image parameter must have rank 0, 1 or 2, got shape {param.shape}")


def transmission(depth, beta):
    """Transmission map t = exp(-beta * depth) (Beer-Lambert), shape of `depth` ([B, H, W, 1])."""
    return tf.exp(-_per_image(beta) * _float(depth))


def synthesize_haze(clear, depth, airlight, beta):
    """Hazes clean images with the ASM: I = J t + A (1 - t), t = exp(-beta d).

    Args:
        clear: J, [B, H, W, C] in [0, 1].
        depth: d, [B, H, W, 1].
        airlight: A, scalar, [B] or [B, C].
        beta: scattering coefficient, scalar or [B].
    Returns:
        Hazy images I, [B, H, W, C]; stays in [0, 1] when J and A do (convex combination).
    """
    t = transmission(depth, beta)
    a = _per_image(airlight)
    return _float(clear) * t + a * (1.0 - t)


def rehazy(hazy, depth, airlight, delta_beta, delta_airlight=None, transmission0=None):
    """Physics-based rehazy generation from a hazy image (Rehazy paper, Eq. 5 / Eq. 6).

    With dt = exp(-delta_beta * d0), the rehazy image of I0 (clean J0, transmission t0,
    airlight A0) for beta_r = beta0 + delta_beta and A_r = A0 + delta_A is (Eq. 5)

        I_r = dt * I0 + A0 (1 - dt) + delta_A (1 - t0 * dt),

    which equals the ASM of the same J0 with beta_r and A_r exactly. With delta_A = 0 this is
    Eq. 6, I_r = dt * I0 + A0 (1 - dt), which needs only A0, delta_beta and d0 (the paper's
    setting). The delta_A term needs t0 = exp(-beta0 d0) of the input, which is unknown for real
    hazy images, so it must be passed explicitly.

    Args:
        hazy: I0, [B, H, W, C].
        depth: d0, [B, H, W, 1].
        airlight: A0 of the input, scalar, [B] or [B, C].
        delta_beta: extra scattering, scalar or [B] (>= 0 adds haze).
        delta_airlight: optional delta_A, scalar, [B] or [B, C].
        transmission0: t0 of the input, [B, H, W, 1]; required when delta_airlight is given.
    Returns:
        I_r, [B, H, W, C]. Not clipped, so the algebra stays exact; Eq. 6 stays in [0, 1] when
        I0 and A0 do, Eq. 5 may leave it when A0 + delta_A does.
    """
    dt = transmission(depth, delta_beta)
    out = dt * _float(hazy) + _per_image(airlight) * (1.0 - dt)
    if delta_airlight is None:
        return out
    if transmission0 is None:
        raise ValueError("rehazy with delta_airlight (Eq. 5) needs transmission0 = exp(-beta0 d0)")
    return out + _per_image(delta_airlight) * (1.0 - _float(transmission0) * dt)


def recover_clear(hazy, transmission, airlight, t_min=0.1):
    """Inverts the ASM: J = (I - A) / max(t, t_min) + A.

    t_min bounds the noise amplification in dense haze (He et al.'s t0). Not clipped, so it is
    the exact inverse of `synthesize_haze` wherever t >= t_min; clip for display.
    """
    a = _per_image(airlight)
    t = tf.maximum(_float(transmission), t_min)
    return (_float(hazy) - a) / t + a


def _as_seed(seed):
    """Normalises a stateless seed: an int becomes [seed, 0]; a [2] int tensor stays."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, 0])
    return seed


def sample_uniform(batch_size, value_range, seed=None):
    """Draws [batch_size] float32 values from U(low, high).

    seed: None (TF global RNG, varies per call) or a stateless seed (int or [2] ints) that
    makes the draw deterministic.
    """
    low, high = (float(v) for v in value_range)
    if seed is None:
        return tf.random.uniform([batch_size], low, high, dtype=tf.float32)
    return tf.random.stateless_uniform([batch_size], _as_seed(seed), low, high, dtype=tf.float32)


def sample_haze_params(batch_size, a_range, beta_range, seed=None):
    """Samples per-image ASM parameters A ~ U(a_range), beta ~ U(beta_range).

    seed: None (global RNG) or a stateless seed (int or [2] ints); the seed is split so A and
    beta use independent streams.
    Returns:
        (airlight [B], beta [B]) float32.
    """
    if seed is None:
        return sample_uniform(batch_size, a_range), sample_uniform(batch_size, beta_range)
    seed_a, seed_beta = tf.unstack(tf.random.split(_as_seed(seed), 2))
    airlight = sample_uniform(batch_size, a_range, seed_a)
    return airlight, sample_uniform(batch_size, beta_range, seed_beta)


__all__ = [
    "PRESETS",
    "transmission",
    "synthesize_haze",
    "rehazy",
    "recover_clear",
    "sample_uniform",
    "sample_haze_params",
]
