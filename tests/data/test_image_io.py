"""read_image / write_image: every supported format and every error case, on tiny generated files."""

import os

import cv2
import numpy as np
import pytest
from PIL import Image

from keras_dehaze.data.image_io import ImageReadError, ImageWriteError, read_image, write_image


def _rgb8(h=12, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth8(h=32, w=48):
    """A smooth gradient: survives JPEG compression almost unchanged."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 128)],
                    axis=-1).astype(np.uint8)


def _check(image, shape):
    assert image.dtype == np.float32 and image.shape == shape
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_png_8bit(tmp_path):
    rgb = _rgb8()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    _check(image, (12, 16, 3))
    np.testing.assert_array_equal(image, rgb / np.float32(255))


def test_png_16bit_rgb_and_gray(tmp_path):
    rgb16 = np.random.default_rng(1).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c.png"), rgb16[:, :, ::-1])
    np.testing.assert_allclose(read_image(tmp_path / "c.png"), rgb16 / 65535.0, atol=1e-7)
    cv2.imwrite(str(tmp_path / "g.png"), rgb16[:, :, 0])
    gray = read_image(tmp_path / "g.png")
    _check(gray, (5, 7, 3))
    np.testing.assert_allclose(gray[:, :, 2], rgb16[:, :, 0] / 65535.0, atol=1e-7)


def test_gray_replicated(tmp_path):
    gray = _rgb8()[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    _check(image, (12, 16, 3))
    for c in range(3):
        np.testing.assert_array_equal(image[:, :, c], gray / np.float32(255))


def test_rgba_alpha_dropped_not_composited(tmp_path):
    rgba = np.dstack([_rgb8(), np.zeros((12, 16), np.uint8)])  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgba[:, :, :3] / np.float32(255))


def test_jpeg_rgb_gray_and_cmyk(tmp_path):
    rgb = _smooth8()
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=98)
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.jpg", quality=98)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    for name in ("rgb.jpg", "cmyk.jpg"):
        image = read_image(tmp_path / name)
        _check(image, (32, 48, 3))
        assert np.abs(image - rgb / 255.0).mean() < 0.02, name
    gray = read_image(tmp_path / "gray.jpg")
    assert np.abs(gray - rgb[:, :, :1] / 255.0).mean() < 0.02


def test_jpeg_exif_orientation_applied(tmp_path):
    image = Image.fromarray(_smooth8())
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "o.jpg", exif=exif)
    assert read_image(tmp_path / "o.jpg").shape == (48, 32, 3)


def test_jpeg_trailing_zero_bytes_accepted(tmp_path):
    Image.fromarray(_smooth8()).save(tmp_path / "z.jpg")
    with open(tmp_path / "z.jpg", "ab") as f:
        f.write(b"\x00" * 100)
    _check(read_image(tmp_path / "z.jpg"), (32, 48, 3))


def test_float_tiff_clipped(tmp_path):
    values = np.linspace(-0.5, 1.5, 4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    assert cv2.imwrite(str(tmp_path / "f.tiff"), values[:, :, ::-1])
    np.testing.assert_allclose(read_image(tmp_path / "f.tiff"), np.clip(values, 0, 1))


@pytest.mark.parametrize("ext", [".bmp", ".webp", ".tif"])
def test_other_formats(tmp_path, ext):
    rgb = _rgb8()
    Image.fromarray(rgb).save(tmp_path / f"a{ext}", **({"lossless": True} if ext == ".webp" else {}))
    np.testing.assert_array_equal(read_image(tmp_path / f"a{ext}"), rgb / np.float32(255))


def test_unicode_path(tmp_path):
    path = tmp_path / "névoa_霧.png"
    Image.fromarray(_rgb8()).save(path)
    _check(read_image(str(path)), (12, 16, 3))


def _error(path, *words):
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message.lower(), message
    return message


def test_error_missing_and_directory(tmp_path):
    _error(tmp_path / "nope.png", "no such file")
    _error(tmp_path, "directory")


def test_error_zero_byte(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    _error(tmp_path / "empty.png", "empty")


def test_error_text_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("hello, I am not an image\n")
    _error(tmp_path / "notes.png", "not an image")


def test_error_truncated_png_and_jpeg(tmp_path):
    Image.fromarray(_rgb8(64, 64)).save(tmp_path / "full.png")
    Image.fromarray(_rgb8(64, 64)).save(tmp_path / "full.jpg")
    for name in ("full.png", "full.jpg"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut{os.path.splitext(name)[1]}"
        cut.write_bytes(data[: len(data) * 2 // 3])
        _error(cut, "truncated")


def test_error_corrupt_png_body(tmp_path):
    Image.fromarray(_rgb8(64, 64)).save(tmp_path / "a.png")
    data = bytearray((tmp_path / "a.png").read_bytes())
    data[40:200] = b"\x00" * 160  # damage IHDR/IDAT but keep signature and IEND
    (tmp_path / "a.png").write_bytes(bytes(data))
    _error(tmp_path / "a.png", "decode")


def test_error_unsupported_depth(tmp_path):
    Image.fromarray(np.full((4, 5), 70000, np.int32)).save(tmp_path / "i32.tif")
    _error(tmp_path / "i32.tif", "unsupported pixel type")


def test_write_read_round_trip_8_and_16_bit(tmp_path):
    image = np.random.default_rng(2).random((9, 11, 3)).astype(np.float32)
    write_image(tmp_path / "sub" / "dir" / "a.png", image)  # creates parents
    np.testing.assert_allclose(read_image(tmp_path / "sub" / "dir" / "a.png"), image,
                               atol=0.5 / 255 + 1e-6)
    write_image(tmp_path / "b.png", image, bit_depth=16)
    np.testing.assert_allclose(read_image(tmp_path / "b.png"), image, atol=0.5 / 65535 + 1e-6)
    write_image(tmp_path / "c.jpg", np.full((8, 8, 3), 0.5, np.float32))
    np.testing.assert_allclose(read_image(tmp_path / "c.jpg"), 0.5, atol=0.01)
    write_image(tmp_path / "g.png", image[:, :, 0])  # gray -> replicated on read
    assert read_image(tmp_path / "g.png").shape == (9, 11, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "c.jpg", "g.png", "sub"]


def test_write_overwrites_atomically_and_clips(tmp_path):
    path = tmp_path / "a.png"
    write_image(path, np.zeros((4, 4, 3)))
    write_image(path, np.full((4, 4, 3), 2.0))
    np.testing.assert_array_equal(read_image(path), 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp files left


def test_write_errors(tmp_path):
    image = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="16-bit"):
        write_image(tmp_path / "a.jpg", image, bit_depth=16)
    with pytest.raises(ValueError, match="cannot write"):
        write_image(tmp_path / "a.gif", image)
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "a.png", np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "a.png", np.full((4, 4, 3), np.nan))
    (tmp_path / "file").write_text("x")  # a file where a directory should be
    with pytest.raises(ImageWriteError, match="file"):
        write_image(tmp_path / "file" / "a.png", image)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write into read-only directories")
def test_write_read_only_dir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ImageWriteError, match="cannot write"):
            write_image(locked / "a.png", np.zeros((4, 4, 3)))
    finally:
        locked.chmod(0o700)


def test_importable_without_tensorflow():
    """The one image reader of the package, the CLI and the on-device runner: no TensorFlow."""
    import subprocess
    import sys

    code = ("import sys\n"
            "for name in ('tensorflow', 'tf_keras', 'keras'):\n"
            "    sys.modules[name] = None\n"
            "from keras_dehaze.data.image_io import IMAGE_EXTENSIONS, read_image_raw, write_image\n"
            "assert '.ppm' in IMAGE_EXTENSIONS\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
