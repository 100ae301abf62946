"""Reading and writing images as float32 RGB in [0, 1] with OpenCV, with errors that name the file.

The one image reader/writer of the project: the package, the command line and the on-device
runner (``keras_dehaze.edge.runner``) all use it. It imports only numpy, cv2 and
``keras_dehaze.atomic`` (no TensorFlow), so it runs on a Raspberry Pi with ai-edge-litert only.

Reading rules (`read_image`):
- 8-bit / 16-bit integer images are divided by 255 / 65535; float images (TIFF, EXR when
  OpenCV is built with it) are clipped to [0, 1] (NaN -> 0).
- grayscale is replicated to 3 channels; an alpha channel is DROPPED, not composited over a
  background (dehazing datasets never rely on transparency, and compositing would invent colours).
- JPEGs are decoded with IMREAD_COLOR: that converts CMYK/YCCK JPEGs to colour and applies the
  EXIF orientation, so a phone photo comes out the way viewers show it.
- the bytes are read by Python and decoded with cv2.imdecode: one read serves the sanity checks
  (empty file, signature, truncation) and the decode, and it works for any path encoding
  (cv2.imread cannot open non-ASCII paths on Windows).
- truncated files are rejected: libjpeg decodes a truncated JPEG into a grey-bottomed image with
  only a warning, so we check for the EOI marker; for PNG we check for the IEND chunk.
"""

import os

import cv2
import numpy as np

from keras_dehaze.atomic import atomic_write

# Files taken from folders (datasets, `keras-dehaze dehaze FOLDER`, the edge runner); a file named
# explicitly is read whatever its extension.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")

# Extensions write_image supports and the bit depths each format can store.
_WRITE_DEPTHS = {".png": (8, 16), ".jpg": (8,), ".jpeg": (8,), ".bmp": (8,), ".tif": (8, 16),
                 ".tiff": (8, 16), ".webp": (8,)}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
# The complete IEND chunk: zero length, type, CRC. Always the last 12 bytes of a complete PNG.
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# Signatures of formats OpenCV can decode, used only to tell "not an image" from "corrupt image".
_KNOWN_SIGNATURES = (
    _PNG_SIGNATURE, _JPEG_SIGNATURE, b"BM", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+",
    b"RIFF", b"\x76\x2f\x31\x01", b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"#?RADIANCE", b"#?RGBE",
    b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51",
)


class ImageReadError(ValueError):
    """An image file is missing, empty, not an image, truncated or in an unsupported format."""


class ImageWriteError(OSError):
    """An image could not be written (directory not writable, encoder failure)."""


def _check_complete(path, data):
    """Raises if a JPEG or PNG file is cut short (OpenCV may silently decode part of it)."""
    if data.startswith(_JPEG_SIGNATURE):
        # Some writers pad files with zero bytes after EOI; those are harmless.
        if not data[-65536:].rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise ImageReadError(
                f"{path}: truncated JPEG (no end-of-image marker FF D9 at the end of the file; "
                f"{len(data)} bytes). The file is probably an incomplete download or copy.")
    elif data.startswith(_PNG_SIGNATURE):
        if data.rfind(_PNG_IEND) < 0:
            raise ImageReadError(
                f"{path}: truncated PNG (no IEND chunk; {len(data)} bytes). The file is probably "
                f"an incomplete download or copy.")


def _decode(path, data):
    """Decodes the bytes with OpenCV; returns the raw array (BGR/BGRA/gray, any dtype)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    if data.startswith(_JPEG_SIGNATURE):
        # IMREAD_COLOR: CMYK -> BGR and EXIF orientation (IMREAD_UNCHANGED does neither reliably).
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    else:
        # UNCHANGED keeps 16-bit and float depth. (8-bit CMYK TIFFs come back as BGRA via
        # libtiff's RGBA reader, so they need no special case.)
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        if not data.startswith(_KNOWN_SIGNATURES):
            head = data[:16]
            raise ImageReadError(
                f"{path}: not an image file (its content does not start with any known image "
                f"signature; first bytes {head!r}). Is it a text/HTML file with an image name?")
        raise ImageReadError(f"{path}: OpenCV could not decode this file (corrupt, or a format "
                             f"variant this OpenCV build does not support).")
    return image


def _to_unit_float(path, image):
    """Scales integer images to [0, 1] and clips float images; rejects other depths.
    In place on the one float32 copy (a 12000x9000 photo needs 1.3 GB, not twice that)."""
    if image.dtype in (np.uint8, np.uint16):
        out = image.astype(np.float32)
        out /= np.float32(255.0 if image.dtype == np.uint8 else 65535.0)
        return out
    _check_depth(path, image)
    image = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(image, 0.0, 1.0, out=image)


def _check_depth(path, image):
    if image.dtype not in (np.uint8, np.uint16, np.float16, np.float32, np.float64):
        raise ImageReadError(f"{path}: unsupported pixel type {image.dtype} (supported: 8-bit and "
                             f"16-bit unsigned integer, float16/32/64).")


def _to_rgb(path, image):
    """Converts OpenCV's gray / BGR / BGRA layout to 3-channel RGB (alpha is dropped)."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3:
        raise ImageReadError(f"{path}: unsupported array shape {image.shape}.")
    channels = image.shape[2]
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 2:  # gray + alpha
        return np.repeat(image[:, :, :1], 3, axis=2)
    if channels in (3, 4):
        return image[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
    raise ImageReadError(f"{path}: unsupported channel count {channels} (supported: 1, 2, 3, 4).")


def read_image(path):
    """Reads an image file as float32 RGB, shape (H, W, 3), values in [0, 1].

    Args:
        path: str or os.PathLike.

    Raises:
        ImageReadError: (a ValueError) naming the file and the problem: missing path, directory,
            empty file, not an image, truncated JPEG/PNG, undecodable, unsupported depth/channels.
    """
    path = os.fspath(path)
    return np.ascontiguousarray(_to_unit_float(path, _read_rgb(path)), dtype=np.float32)


def read_image_raw(path):
    """Reads an image file as RGB (H, W, 3) in its stored depth, without a float copy.

    Same rules and errors as ``read_image``, but 8/16-bit images come back as uint8/uint16
    (0..255 / 0..65535; float files as float32 clipped to [0, 1]) and may be a view (channels
    reversed from OpenCV's BGR). For huge photos: the tiled dehazers scale integer images tile
    by tile, so a 12000x9000 photo costs 324 MB instead of 1.3 GB of float32.
    """
    path = os.fspath(path)
    image = _read_rgb(path)
    _check_depth(path, image)
    if image.dtype.kind == "f":
        return _to_unit_float(path, image)
    return image


def _read_rgb(path):
    """Reads and decodes ``path``: RGB (H, W, 3), any depth (a view of the decoded array)."""
    if not os.path.exists(path):
        raise ImageReadError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise ImageReadError(f"{path}: is a directory, not an image file.")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read the file ({e.strerror or e}).") from e
    if not data:
        raise ImageReadError(f"{path}: empty file (0 bytes).")
    _check_complete(path, data)
    image = _decode(path, data)
    del data
    if image.size == 0:
        raise ImageReadError(f"{path}: decoded to an empty image {image.shape}.")
    return _to_rgb(path, image)


def _encode(path, image, bit_depth, quality):
    """Converts a float RGB image to the integer BGR bytes of the format chosen by `path`."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in _WRITE_DEPTHS:
        raise ValueError(f"{path}: cannot write '{ext or 'no extension'}' files; use one of "
                         f"{sorted(_WRITE_DEPTHS)}.")
    if bit_depth not in _WRITE_DEPTHS[ext]:
        raise ValueError(f"{path}: {ext} files cannot store {bit_depth}-bit images "
                         f"(supported: {_WRITE_DEPTHS[ext]}).")
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or image.size == 0:
        raise ValueError(f"{path}: expected an (H, W, 3) RGB or (H, W) gray image, "
                         f"got shape {image.shape}.")
    scale = 255.0 if bit_depth == 8 else 65535.0
    dtype = np.dtype(np.uint8 if bit_depth == 8 else np.uint16)
    if image.dtype == dtype:  # already scaled pixels (tiled dehazers can produce them directly)
        pixels = image
    else:
        if image.dtype in (np.uint8, np.uint16):  # the other integer depth: rescale exactly
            image = image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
        elif image.dtype.kind not in "fiub":
            raise ValueError(f"{path}: cannot write an image of dtype {image.dtype}.")
        # In bands of rows: no full-size float temporaries for huge images.
        pixels = np.empty(image.shape, dtype)
        for r0 in range(0, image.shape[0], 256):
            band = image[r0:r0 + 256].astype(np.float32)
            if not np.all(np.isfinite(band)):
                raise ValueError(f"{path}: the image contains NaN or infinite values.")
            pixels[r0:r0 + 256] = np.round(np.clip(band, 0.0, 1.0) * scale)
    if pixels.ndim == 3:
        pixels = np.ascontiguousarray(pixels[:, :, ::-1])  # RGB -> BGR for OpenCV
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(ext, pixels, params)
    if not ok:
        raise ImageWriteError(f"{path}: OpenCV failed to encode the image as {ext}.")
    return encoded.tobytes()


def write_image(path, image, bit_depth=8, quality=95):
    """Writes a float RGB image in [0, 1] (values outside are clipped) as PNG/JPEG/BMP/TIFF/WebP.

    A uint8 (uint16) image is taken as already scaled to 0..255 (0..65535) pixels.

    The format comes from the extension. 16-bit output (`bit_depth=16`) is for PNG and TIFF.
    Parent directories are created. The write is atomic: the bytes go to a temporary file in the
    same directory which then replaces `path`, so a crash never leaves a half-written image that a
    later run would read as truncated.

    Raises:
        ValueError: unsupported extension / bit depth, wrong shape, NaN values.
        ImageWriteError: (an OSError) the directory cannot be created or written.
    """
    path = os.fspath(path)
    data = _encode(path, image, bit_depth, quality)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise ImageWriteError(f"{path}: cannot create directory {parent} "
                              f"({e.strerror or e}).") from e
    try:
        atomic_write(path, data)  # temporary file + os.replace; removed on any failure
    except OSError as e:
        raise ImageWriteError(f"{path}: cannot write the image into {parent} "
                              f"({e.strerror or e}).") from e


__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "ImageWriteError", "read_image", "read_image_raw",
           "write_image"]
