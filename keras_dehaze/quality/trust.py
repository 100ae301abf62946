"""Colabator trust weights: per-patch haze density D and quality Q -> a full-resolution weight map.

For one pseudo-label (the teacher's output) split into an N x N grid of patches P_k:

    c_k = 1 - norm(D(P_k))          clarity: 1 for the least hazy patch, 0 for the haziest
    q_k = norm(Q(P_k))              quality: 1 for the best patch, 0 for the worst
    s_k = c_k * q_k                 in [0, 1]; high only when a patch is clear AND good
    w_k = Psi(s_k) = 2 * sigmoid(temperature * (s_k - mean_k s_k))

with norm(x) = (x - min_k x) / (max_k x - min_k x) over the patches of THIS image (0.5 for every
patch when all scores are equal: no preference). So clearer and better patches get MORE weight;
w is in (0, 2), w = 1 for a patch of average score (and for every patch when all patches score
the same), so the weighted L1 keeps roughly the scale of a plain L1; with T = 4 and s in [0, 1]
the weights stay within (2 sigmoid(-4), 2 sigmoid(4)) = (0.04, 1.96). The map is w_k repeated
over the pixels of P_k (nearest-neighbour upsampling).

Paper: ``w = Psi(norm(D) * norm(Q))`` (Fang et al., NeurIPS 2024, poster). There, D is the CLIP "hazy"
probability (higher = hazier), so the literal product would favour HAZY patches; the reference
code flips it (``len(degradations) - score``) and sums instead of multiplying. We use the stated
intent - clear and good patches get more weight - with the product of clarity and quality.
"""

import numpy as np

from keras_dehaze.quality.density import grid_bounds


def minmax(x, eps=1e-6):
    """(x - min) / (max - min) over all entries; 0.5 everywhere when the range is below eps."""
    x = np.asarray(x, dtype=np.float32)
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi - lo < eps:
        return np.full_like(x, 0.5)
    return (x - lo) / (hi - lo)


def upsample_nearest(cells, height, width):
    """[g, g] cell values -> [height, width] map, each cell filling its grid_bounds block."""
    g = cells.shape[0]
    row_of = np.repeat(np.arange(g), np.diff(grid_bounds(height, g)))
    col_of = np.repeat(np.arange(g), np.diff(grid_bounds(width, g)))
    return cells[row_of][:, col_of].astype(np.float32)


def patch_trust(density_cells, quality_cells, temperature=4.0):
    """Per-patch weights Psi((1 - norm(D)) * norm(Q)), float32 [g, g] (see the module doc)."""
    score = (1.0 - minmax(density_cells)) * minmax(quality_cells)
    return (2.0 / (1.0 + np.exp(-float(temperature) * (score - score.mean())))).astype(np.float32)


def trust_weights(image, density, quality, grid=8, temperature=4.0):
    """Trust-weight map of one pseudo-label.

    Args:
        image: HxWx3 pseudo-label in [0, 1].
        density: scorer with ``patch_scores(image, grid)``, lower = clearer.
        quality: scorer with ``patch_scores(image, grid)``, higher = better.
        grid: N of the N x N patch grid.
        temperature: steepness of Psi.

    Returns:
        (weights [H, W] float32, details dict with the per-patch "density", "quality" and
        "weights" [N, N]).
    """
    image = np.asarray(image, dtype=np.float32)
    d = density.patch_scores(image, grid)
    q = quality.patch_scores(image, grid)
    cells = patch_trust(d, q, temperature)
    return upsample_nearest(cells, image.shape[0], image.shape[1]), {"density": d, "quality": q, "weights": cells}


def score_label(image, density, quality, grid=8, temperature=4.0):
    """Everything the label pool needs for one pseudo-label: (weights [H, W], D, Q) with the
    image-level D (lower = clearer) and Q (higher = better) scored on the whole image."""
    weights, _ = trust_weights(image, density, quality, grid, temperature)
    return weights, float(density([image])[0]), float(quality([image])[0])


__all__ = ["minmax", "patch_trust", "score_label", "trust_weights", "upsample_nearest"]
