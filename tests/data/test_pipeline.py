"""The tf.data pipelines (keras_dehaze/data/pipeline.py) on tiny generated folders: paired crops
share one transform, augmentation is seeded, epochs replay, validation is ordered."""

import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.data import find_pairs, image_dataset, paired_dataset, read_image, validation_dataset, write_image


H, W = 20, 24


@pytest.fixture
def pairs(tmp_path):
    """Random-noise clear images (any wrong flip/rotation shows) and hazy = 0.5 * clear + 0.25,
    as 16-bit PNGs so the relation survives quantization."""
    rng = np.random.default_rng(0)
    for i in range(6):
        clear = rng.random((H, W, 3)).astype(np.float32)
        write_image(tmp_path / "clear" / f"{i}.png", clear, bit_depth=16)
        write_image(tmp_path / "hazy" / f"{i}_1.png", 0.5 * clear + 0.25, bit_depth=16)
    found = find_pairs(tmp_path)
    assert len(found) == 6
    return found


def _arrays(ds, n=None):
    ds = ds if n is None else ds.take(n)
    return [tuple(t.numpy() for t in batch) if isinstance(batch, tuple) else batch.numpy()
            for batch in ds]


def _find_window(crop, image):
    """(flip, k) if `crop` equals a window of `image` flipped then turned k*90 degrees, else None."""
    ch, cw = crop.shape[:2]
    for flip in (False, True):
        base = image[:, ::-1] if flip else image
        for k in range(4):
            turned = np.rot90(base, k)
            for y in range(turned.shape[0] - ch + 1):
                for x in range(turned.shape[1] - cw + 1):
                    # Crops, flips and turns copy pixels exactly, so exact equality holds.
                    if np.array_equal(turned[y, x], crop[0, 0]) and \
                            np.array_equal(turned[y:y + ch, x:x + cw], crop):
                        return flip, k
    return None


def _transforms(pairs, augment):
    """Checks every crop and returns the set of (flip, k) transforms that were used."""
    originals = [read_image(p.clear) for p in pairs]
    ds = paired_dataset(pairs, batch_size=4, crop_size=8, augment=augment, seed=1, repeat=True)
    used = set()
    for hazy, clear in _arrays(ds, 4):
        assert hazy.shape == clear.shape == (4, 8, 8, 3) and hazy.dtype == np.float32
        assert 0.0 <= hazy.min() and hazy.max() <= 1.0
        np.testing.assert_allclose(hazy, 0.5 * clear + 0.25, atol=1e-4)  # same window & turn
        for crop in clear:
            found = [t for t in (_find_window(crop, image) for image in originals) if t]
            assert len(found) == 1
            used.add(found[0])
    return used


def test_paired_crops_are_identical_transforms(pairs):
    assert _transforms(pairs, augment=False) == {(False, 0)}
    used = _transforms(pairs, augment=True)
    assert len(used) >= 4 and any(flip for flip, _ in used) and any(k % 2 for _, k in used)


def test_augmentation_varies_and_is_deterministic(pairs):
    def run(seed):
        return _arrays(paired_dataset(pairs, 3, crop_size=8, seed=seed, repeat=True), 4)

    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_epochs_differ_but_replay_identically(pairs):
    def two_epochs():
        ds = paired_dataset(pairs, 6, crop_size=8, seed=3)
        return _arrays(ds) + _arrays(ds)

    run1, run2 = two_epochs(), two_epochs()
    assert len(run1) == 2 and not np.array_equal(run1[0][0], run1[1][0])
    for a, b in zip(run1, run2):
        np.testing.assert_array_equal(a[0], b[0])


def test_cache_gives_the_same_stream(pairs):
    plain = _arrays(paired_dataset(pairs, 2, crop_size=8, seed=4))
    cached = _arrays(paired_dataset(pairs, 2, crop_size=8, seed=4, cache=True))
    for a, b in zip(plain, cached):
        np.testing.assert_array_equal(a[0], b[0])


def test_full_images_non_square_keep_shape(pairs):
    for hazy, clear in _arrays(paired_dataset(pairs, 2, augment=True, seed=0)):
        assert hazy.shape == clear.shape == (2, H, W, 3)  # rot90 limited to 0/180
        np.testing.assert_allclose(hazy, 0.5 * clear + 0.25, atol=1e-4)


def test_validation_dataset_is_ordered_full_images(pairs):
    batches = _arrays(validation_dataset(pairs))
    assert len(batches) == len(pairs)
    for (hazy, clear), pair in zip(batches, pairs):
        np.testing.assert_array_equal(hazy[0], read_image(pair.hazy))
        np.testing.assert_array_equal(clear[0], read_image(pair.clear))


def test_image_dataset(pairs):
    paths = [p.clear for p in pairs]
    batches = _arrays(image_dataset(paths, batch_size=4, crop_size=(8, 10), seed=2))
    assert [b.shape for b in batches] == [(4, 8, 10, 3), (2, 8, 10, 3)]
    again = _arrays(image_dataset(paths, batch_size=4, crop_size=(8, 10), seed=2))
    np.testing.assert_array_equal(batches[0], again[0])


def test_pipeline_errors_name_the_file(pairs, tmp_path):
    with pytest.raises(tf.errors.OpError, match=r"0_1\.png.*smaller than crop_size"):
        _arrays(paired_dataset(pairs[:1], 1, crop_size=64))
    write_image(tmp_path / "big.png", np.zeros((H + 2, W, 3)))
    with pytest.raises(tf.errors.OpError, match=r"big\.png: size .* differs"):
        _arrays(paired_dataset([(pairs[0].hazy, str(tmp_path / "big.png"))], 1))
    with pytest.raises(tf.errors.OpError, match=r"missing\.png: no such file"):
        _arrays(image_dataset([str(tmp_path / "missing.png")], 1))
    with pytest.raises(ValueError, match="empty"):
        paired_dataset([], 1)
    with pytest.raises(ValueError, match="crop_size"):
        paired_dataset(pairs, 1, crop_size=0)
