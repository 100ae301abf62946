"""No-reference image quality: BRISQUE (Mittal, Moorthy, Bovik, IEEE TIP 2012).

Backend: the PyPI package ``brisque`` (0.2.0, Apache-2.0), which ships its trained model: a
libsvm epsilon-SVR (``brisque/models/svm.txt``, 770 support vectors, RBF kernel) and the feature
scaling ranges (``normalize.pickle``) - no download, works offline. Its feature code is the
standard BRISQUE: MSCN coefficients (7x7 Gaussian, sigma 7/6) and their four pairwise products,
each fitted with an asymmetric generalised Gaussian, at full and half scale (36 features).

One compatibility fix (``_CompatBRISQUE``): with numpy >= 2 the package's features are 1-element
arrays that ``float()`` rejects; we flatten them before the package's own scaling. Everything
else (features, scaling, SVR prediction) is the package's.

Score convention here: ``BRISQUEQuality`` returns Q = 100 - BRISQUE, clipped to [0, 100], so
HIGHER = BETTER (raw BRISQUE is lower = better, nominally 0..100, but can leave that range).
BRISQUE is undefined on flat patches (zero local variance: the package returns NaN); those get
``nan_quality`` (default 0, the worst). Patches should be >= 32 px a side: below ~24 px the
half-scale fit degenerates (16 px gives the SVR's bias, 155.8; 12 px gives NaN).

How this differs from the paper: Colabator's Q is MUSIQ (a multi-scale image-quality
transformer trained on KonIQ-10k, via pyiqa/PyTorch). MUSIQ is learned from human opinion
scores on in-the-wild photos; BRISQUE is a 36-feature natural-scene-statistics model trained on
LIVE's synthetic distortions (blur, noise, JPEG/JPEG2000, fast fading). BRISQUE penalises blur,
noise and compression well but knows nothing about haze or colour casts, and is noisier on
32 px patches than MUSIQ. The paper's evaluation also reports BRISQUE (Fang et al., NeurIPS 2024), so this is
a real, standard measure - just not the one the paper used for its trust weights.
"""

import warnings

import numpy as np

MIN_SIDE = 16  # below this the package returns NaN or the SVR bias


def _load_backend():
    try:
        from brisque import BRISQUE
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "BRISQUEQuality needs the 'brisque' package (pip install brisque==0.2.0; it ships its "
            f"SVR model and works offline): {e}") from e

    class _CompatBRISQUE(BRISQUE):
        def scale_features(self, features):
            # numpy 2: the package's features are shape-(1,) arrays; flatten them first.
            flat = np.concatenate([np.ravel(np.asarray(f, dtype=np.float64)) for f in features])
            return super().scale_features(flat)

    return _CompatBRISQUE(url=False)


class BRISQUEQuality:
    """No-reference quality Q = clip(100 - BRISQUE, 0, 100): HIGHER = BETTER.

    Args:
        nan_quality: Q given to images/patches where BRISQUE is undefined (flat content).
        clip: clip Q to [0, 100].

    Example:
        >>> quality = BRISQUEQuality()
        >>> quality([sharp, blurred])        # e.g. array([86.3, 9.8])
        >>> quality.patch_scores(image, 4)   # [4, 4]
        >>> quality.brisque(image)           # the raw BRISQUE score (lower = better)

    Reference:
        Mittal, Moorthy, Bovik, "No-Reference Image Quality Assessment in the Spatial Domain",
        IEEE TIP 2012. Package: pypi.org/project/brisque (rehanguha/brisque).
    """

    name = "brisque"
    higher_is_better = True

    def __init__(self, nan_quality=0.0, clip=True):
        self.nan_quality = float(nan_quality)
        self.clip = bool(clip)
        self._model = _load_backend()

    def brisque(self, image):
        """Raw BRISQUE of one HxWx3 image in [0, 1] (lower = better; NaN on flat content)."""
        image = np.asarray(image, dtype=np.float64)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
        if min(image.shape[:2]) < MIN_SIDE:
            raise ValueError(f"BRISQUE needs at least {MIN_SIDE}x{MIN_SIDE} pixels (>= 32 recommended), "
                             f"got {image.shape[1]}x{image.shape[0]}")
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # divide-by-zero on flat patches, scipy deprecations
            try:
                return float(self._model.score(np.clip(image, 0.0, 1.0)))
            except (ValueError, FloatingPointError, ZeroDivisionError):
                return float("nan")

    def _quality(self, raw):
        if not np.isfinite(raw):
            return self.nan_quality
        q = 100.0 - raw
        return float(np.clip(q, 0.0, 100.0)) if self.clip else q

    def __call__(self, images):
        """Per-image Q, float32 [N]."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        return np.array([self._quality(self.brisque(im)) for im in images], np.float32)

    def patch_scores(self, image, grid):
        """Q of each cell of a grid x grid split of one image, float32 [grid, grid]."""
        from keras_dehaze.quality.density import grid_bounds

        image = np.asarray(image, dtype=np.float32)
        rows, cols = grid_bounds(image.shape[0], int(grid)), grid_bounds(image.shape[1], int(grid))
        return np.array([[self._quality(self.brisque(image[rows[i]:rows[i + 1], cols[j]:cols[j + 1]]))
                          for j in range(int(grid))] for i in range(int(grid))], np.float32)

    def __repr__(self):
        return f"BRISQUEQuality(nan_quality={self.nan_quality}, clip={self.clip})"
