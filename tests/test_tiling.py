"""keras_dehaze/tiling.py: padding, tile layout, blending weights, tiled == untiled, memory.

numpy only (the module must not need TensorFlow or anything else of the package: it is one of
the on-device runner's files; it is loaded here by file path to show that).
"""

import ast
import importlib.util
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from tests import REPO as ROOT

TILING_PATH = os.path.join(ROOT, "keras_dehaze", "tiling.py")

_spec = importlib.util.spec_from_file_location("_test_tiling_module", TILING_PATH)
tiling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiling)


# ---------------------------------------------------------------------------- helpers

def box_blur(batch, radius=1):
    """(2r+1)^2 box blur with reflect padding: a local op with receptive-field radius r."""
    b, h, w, c = batch.shape
    p = np.pad(batch, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
    k = 2 * radius + 1
    out = np.zeros_like(batch, dtype=np.float32)
    for dy in range(k):
        for dx in range(k):
            out += p[:, dy:dy + h, dx:dx + w]
    return out / np.float32(k * k)


def zero_padded_blur(batch, radius=1):
    """Box blur with ZERO padding (like a 'same' conv): tile edges are genuinely wrong."""
    b, h, w, c = batch.shape
    p = np.pad(batch, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
    k = 2 * radius + 1
    out = np.zeros_like(batch, dtype=np.float32)
    for dy in range(k):
        for dx in range(k):
            out += p[:, dy:dy + h, dx:dx + w]
    return out / np.float32(k * k)


def seam_mask(shape, tile, overlap, align=4):
    """True on pixels covered by more than one tile (the blended seams)."""
    h, w = shape
    count = np.zeros((h, w), dtype=np.int32)
    ys = tiling.tile_starts(h, tile[0], overlap, align)
    xs = tiling.tile_starts(w, tile[1], overlap, align)
    for y in ys:
        for x in xs:
            count[y:y + tile[0], x:x + tile[1]] += 1
    return count > 1


def smooth_image(h, w, seed=0):
    """A smooth, photo-like float image in [0, 1] (low-frequency noise + gradient)."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    yi = np.linspace(0, small.shape[0] - 1.001, h)
    xi = np.linspace(0, small.shape[1] - 1.001, w)
    y0, x0 = yi.astype(int), xi.astype(int)
    fy, fx = (yi - y0)[:, None, None], (xi - x0)[None, :, None]
    img = (small[y0][:, x0] * (1 - fy) * (1 - fx) + small[y0 + 1][:, x0] * fy * (1 - fx)
           + small[y0][:, x0 + 1] * (1 - fy) * fx + small[y0 + 1][:, x0 + 1] * fy * fx)
    img += 0.05 * rng.standard_normal((h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------- numpy only

def test_module_imports_only_numpy():
    tree = ast.parse(open(TILING_PATH).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports (the file is loaded by path)"
            imported.add(node.module.split(".")[0])
    assert imported <= {"numpy", "math", "__future__"}, imported


def test_loads_by_path_without_tensorflow_or_package():
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras_dehaze'] = None\n"
        "import importlib.util, numpy as np\n"
        f"spec = importlib.util.spec_from_file_location('t', {TILING_PATH!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "x = np.random.default_rng(0).random((50, 70, 3), dtype=np.float32)\n"
        "y = m.dehaze_tiled(x, lambda b: b, (32, 32), overlap=8)\n"
        "assert np.allclose(x, y, atol=1e-6)\n"
        "assert not any(k.startswith(('tensorflow', 'keras')) for k in sys.modules\n"
        "               if sys.modules[k] is not None)\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


# ---------------------------------------------------------------------------- padding

@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 7), (31, 32), (33, 17), (64, 64)])
@pytest.mark.parametrize("multiple", [1, 4, 8, 32])
def test_pad_to_multiple_round_trip(shape, multiple):
    img = np.random.default_rng(1).random(shape + (3,), dtype=np.float32)
    padded, size = tiling.pad_to_multiple(img, multiple)
    assert size == shape
    assert padded.shape[0] % multiple == 0 and padded.shape[1] % multiple == 0
    assert padded.shape[0] - shape[0] < multiple and padded.shape[1] - shape[1] < multiple
    np.testing.assert_array_equal(tiling.crop_to_size(padded, size), img)


def test_padding_modes_reflect_and_edge():
    img = np.arange(5 * 6, dtype=np.float32).reshape(5, 6, 1)
    p = tiling.pad_to_size(img, (8, 8))  # pads 3 rows (< 5) and 2 cols (< 6): reflect
    np.testing.assert_array_equal(p[5, :6], img[3])
    np.testing.assert_array_equal(p[7, :6], img[1])
    np.testing.assert_array_equal(p[:5, 6], img[:, 4])
    tiny = np.arange(2 * 3, dtype=np.float32).reshape(2, 3, 1)
    q = tiling.pad_to_size(tiny, (16, 16))  # pad larger than the image: edge replication
    np.testing.assert_array_equal(q[2:, :3], np.broadcast_to(tiny[1], (14, 3, 1)))
    np.testing.assert_array_equal(q[:2, 3:], np.broadcast_to(tiny[:, 2:3], (2, 13, 1)))
    one = np.full((1, 1, 3), 0.25, dtype=np.float32)
    assert np.all(tiling.pad_to_size(one, (4, 4)) == 0.25)
    with pytest.raises(ValueError, match="smaller"):
        tiling.pad_to_size(img, (4, 8))


# ---------------------------------------------------------------------------- tile layout

@pytest.mark.parametrize("length,tile,overlap", [
    (256, 256, 32), (100, 256, 32), (257, 256, 32), (1200, 256, 32), (1600, 256, 32),
    (1000, 64, 0), (12, 9, 8), (75, 32, 8), (12000, 256, 32), (9000, 512, 64)])
def test_tile_starts_cover_and_overlap(length, tile, overlap):
    starts = tiling.tile_starts(length, tile, overlap)
    assert starts[0] == 0
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] == length - tile  # last tile ends exactly at the border
    assert starts == sorted(set(starts))
    overlaps = [starts[i - 1] + tile - starts[i] for i in range(1, len(starts))]
    assert min(overlaps) >= overlap
    # minimal: one tile fewer could not keep the requested overlap
    n = len(starts)
    if n > 2:
        assert (n - 2) * (tile - overlap) < length - tile


def test_blend_weights_sum_to_one_1d_sweep():
    rng = np.random.default_rng(0)
    cases = [(int(L), int(T), int(o)) for L, T, o in zip(
        rng.integers(1, 700, 300), rng.integers(4, 130, 300), rng.integers(0, 200, 300))]
    for length, tile, overlap in cases:
        overlap = min(overlap, tile - 1)
        starts, windows = tiling.blend_windows_1d(length, tile, overlap)
        total = np.zeros(length, dtype=np.float64)
        for s, w in zip(starts, windows):
            assert w.shape == (min(tile, length),)
            assert np.all(w >= 0)
            total[s:s + len(w)] += w
        np.testing.assert_allclose(total, 1.0, atol=1e-6, err_msg=str((length, tile, overlap)))


def test_blend_weights_sum_to_one_2d_and_are_smooth():
    h, w, tile, overlap = 300, 410, (64, 96), 16
    ys, wys = tiling.blend_windows_1d(h, tile[0], overlap)
    xs, wxs = tiling.blend_windows_1d(w, tile[1], overlap)
    total = np.zeros((h, w))
    for y, wy in zip(ys, wys):
        for x, wx in zip(xs, wxs):
            total[y:y + tile[0], x:x + tile[1]] += np.outer(wy, wx)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    # Smooth cross-fade: no jump larger than a raised-cosine step over the ramp.
    for wy in wys:
        assert np.max(np.abs(np.diff(wy))) < 0.25
    # Edge pixels of a tile (next to a neighbour) get weight 0, the border of the image 1.
    assert wys[0][0] == 1 and wys[0][-1] == 0 and wys[1][0] == 0


# ---------------------------------------------------------------------------- tiled inference

def test_identity_and_gamma_are_exact():
    img = np.random.default_rng(2).random((301, 433, 3), dtype=np.float32)
    out = tiling.dehaze_tiled(img, lambda b: b, (64, 64), overlap=16)
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out, img, atol=1e-6)
    out = tiling.dehaze_tiled(img, lambda b: b ** 2.2, (64, 96), overlap=24)
    np.testing.assert_allclose(out, img ** 2.2, atol=1e-6)


def test_box_blur_matches_untiled_including_seams():
    """Local op (3x3 box blur, radius 1): the zero-weight margin (overlap // 4 >= 1 pixel) hides
    every tile-edge pixel, so the tiled result equals the untiled one everywhere, seams too."""
    img = smooth_image(300, 410, seed=3)
    full = box_blur(img[None])[0]
    tile, overlap = (64, 64), 16
    out = tiling.dehaze_tiled(img, box_blur, tile, overlap=overlap)
    seams = seam_mask(img.shape[:2], tile, overlap)
    assert seams.mean() > 0.3  # the seams are a large part of this image
    err = np.abs(out - full).max(-1)
    assert err[~seams].max() < 1e-6
    assert err[seams].max() < 1e-6


def test_seam_error_with_receptive_field_wider_than_margin():
    """A zero-padded 9x9 blur (radius 4) on 64x64 tiles with overlap 8 (margin 2 < 4): tile
    edges are genuinely wrong, and the blend must keep the error at seams small. Measured:
    max |error| at seams 0.0017 on this smooth image (0.54 at a tile edge without blending;
    1e-7 with overlap 16, whose margin 4 covers the radius);
    away from seams (only one tile covers) the result is exact."""
    img = smooth_image(300, 412, seed=4)  # multiples of 4: no tile reaches past the image
    run = lambda b: zero_padded_blur(b, radius=4)  # noqa: E731
    tile, overlap = (64, 64), 8
    # Reference: the same op on the whole image (zero padding only at the image border).
    full = run(img[None])[0]
    out = tiling.dehaze_tiled(img, run, tile, overlap=overlap)
    seams = seam_mask(img.shape[:2], tile, overlap)
    err = np.abs(out - full).max(-1)
    assert err[~seams].max() < 1e-6
    seam_err = err[seams].max()
    assert seam_err < 0.005, seam_err
    # Without blending (hard cut in the middle of each overlap) the error is much larger.
    naive_edge_err = np.abs(run(img[None, :64, :64])[0, -1] - full[63, :64]).max()
    assert naive_edge_err > 10 * seam_err


def test_tile_larger_than_image_is_padded_and_run_once():
    img = np.random.default_rng(5).random((20, 30, 3), dtype=np.float32)
    calls = []

    def run(b):
        calls.append(b.copy())
        return b * 0.5

    out = tiling.dehaze_tiled(img, run, (64, 64), overlap=32)
    assert len(calls) == 1 and calls[0].shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(calls[0][0, :20, :30], img)
    np.testing.assert_allclose(out, img * 0.5, atol=1e-7)
    assert out.shape == img.shape


def test_image_of_tile_size_runs_once_unpadded_and_mixed_axes():
    img = np.random.default_rng(6).random((64, 48, 3), dtype=np.float32)
    calls = []
    run = lambda b: calls.append(b.shape) or b  # noqa: E731
    np.testing.assert_array_equal(tiling.dehaze_tiled(img, run, (64, 48), overlap=8), img)
    assert calls == [(1, 64, 48, 3)]
    # One axis smaller than the tile (padded), the other larger (tiled); every call gets the
    # exact tile size (fixed-size models).
    calls.clear()
    img = np.random.default_rng(7).random((40, 333, 3), dtype=np.float32)
    out = tiling.dehaze_tiled(img, run, (64, 64), overlap=16)
    assert set(calls) == {(1, 64, 64, 3)} and len(calls) == tiling.count_tiles((40, 333), 64, 16)
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_output_channels_may_differ_and_float64_input():
    img = np.random.default_rng(8).random((100, 90, 3))  # float64
    out = tiling.dehaze_tiled(img, lambda b: b.mean(-1, keepdims=True), (32, 32), overlap=8)
    assert out.shape == (100, 90, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], img.mean(-1), atol=1e-5)


def test_errors_are_clear():
    img = np.zeros((100, 100, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="float"):
        tiling.dehaze_tiled(np.zeros((10, 10, 3), np.int32), lambda b: b, 8)
    with pytest.raises(ValueError, match="overlap"):
        tiling.dehaze_tiled(img, lambda b: b, 32, overlap=32)
    with pytest.raises(ValueError, match="multiple"):
        tiling.dehaze_tiled(img, lambda b: b, 30, overlap=8, multiple=4)
    with pytest.raises(ValueError, match="run_fn must map"):
        tiling.dehaze_tiled(img, lambda b: b[:, :10], 32, overlap=8)
    with pytest.raises(ValueError, match="shape"):
        tiling.dehaze_tiled(np.zeros((10, 10), np.float32), lambda b: b, 8)


def test_dehaze_padded_dynamic_model():
    img = np.random.default_rng(9).random((45, 61, 3), dtype=np.float32)
    seen = []

    def run(b):
        assert b.shape[1] % 8 == 0 and b.shape[2] % 8 == 0
        seen.append(b.shape)
        return box_blur(b)

    out = tiling.dehaze_padded(img, run, 8)
    assert seen == [(1, 48, 64, 3)] and out.shape == img.shape and out.dtype == np.float32
    # Interior (away from the padded bottom/right border) equals the untiled op.
    np.testing.assert_allclose(out[:-1, :-1], box_blur(img[None])[0, :-1, :-1], atol=1e-6)


# ---------------------------------------------------------------------------- memory

def test_memory_bounded_by_output_plus_a_few_tiles():
    """4000x3000 with identity, tile 256: traced peak allocations during the call stay within
    the output array plus a few tiles (no full-size weight map / padded copy / per-tile
    full-size arrays). numpy reports its data buffers to tracemalloc."""
    h, w, tile = 3000, 4000, (256, 256)
    img = np.random.default_rng(10).random((h, w, 3), dtype=np.float32)
    output_bytes = h * w * 3 * 4
    tile_bytes = tile[0] * tile[1] * 3 * 4
    n_calls = [0]

    def run(b):
        n_calls[0] += 1
        return b

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = tiling.dehaze_tiled(img, run, tile, overlap=32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n_calls[0] == tiling.count_tiles((h, w), tile, 32) > 100
    extra = peak - output_bytes
    assert extra < 8 * tile_bytes, (peak, output_bytes, tile_bytes)
    np.testing.assert_allclose(out[::37, ::41], img[::37, ::41], atol=1e-6)


# ---------------------------------------------------------------------------- strided networks

def pool_unpool(batch, factor=4):
    """factor x factor average pooling then nearest up-sampling: a phase-dependent op, like the
    down-sampling of an encoder-decoder (sizes must be multiples of factor)."""
    b, h, w, c = batch.shape
    pooled = batch.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))
    return np.repeat(np.repeat(pooled, factor, axis=1), factor, axis=2)


@pytest.mark.parametrize("length,tile,overlap,align", [
    (1200, 256, 32, 4), (1600, 256, 32, 4), (75, 32, 8, 4), (1001, 64, 16, 8), (257, 256, 32, 4),
    (300, 64, 60, 4), (97, 32, 0, 16)])
def test_aligned_tile_starts(length, tile, overlap, align):
    starts = tiling.tile_starts(length, tile, overlap, align)
    assert starts[0] == 0 and all(s % align == 0 for s in starts)
    assert starts[-1] + tile >= length and starts[-1] + tile - length < align
    assert all(starts[i - 1] + tile - starts[i] >= overlap for i in range(1, len(starts)))
    starts_, windows = tiling.blend_windows_1d(length, tile, overlap, align)
    total = np.zeros(length)
    for s, w in zip(starts_, windows):
        assert len(w) == min(tile, length - s)
        total[s:s + len(w)] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="too large"):
        tiling.tile_starts(length + tile, tile, tile - align + 1, align)


def test_tiles_aligned_to_multiple_match_whole_image_for_strided_op():
    """With starts aligned to `multiple`, a 4x4 pool/unpool (phase-dependent) gives exactly the
    whole-image result (dehaze_padded, same bottom/right reflect padding), image size not a
    multiple of 4 either; unaligned tiles (multiple=1, tile still a multiple of 4) do not."""
    img = smooth_image(301, 419, seed=11)
    whole = tiling.dehaze_padded(img, pool_unpool, 4)
    tiled = tiling.dehaze_tiled(img, pool_unpool, (64, 64), overlap=16, multiple=4)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    unaligned = tiling.dehaze_tiled(img, pool_unpool, (64, 64), overlap=16, multiple=1)
    assert np.abs(unaligned - whole).max() > 0.01


def test_integer_images_are_scaled_per_tile():
    rng = np.random.default_rng(12)
    img8 = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    img16 = rng.integers(0, 65536, (90, 130, 3), dtype=np.uint16)
    for img, scale in ((img8, 255.0), (img16, 65535.0)):
        want = img.astype(np.float32) / np.float32(scale)
        got = tiling.dehaze_tiled(img, lambda b: b, (32, 48), overlap=8)
        np.testing.assert_allclose(got, want, atol=1e-6)
        np.testing.assert_allclose(tiling.dehaze_padded(img[:, ::-1], lambda b: b, 8),
                                   want[:, ::-1], atol=1e-6)  # non-contiguous view too
