"""Unpaired training data: clean images with depth, and real hazy images, drawn independently.

Clean images need a depth map for the ASM haze synthesis of the Rehazy clean branch:
``<stem>_depth.png`` beside the image, or ``<stem>.png`` in a sibling ``depth/`` folder
(``data/clear/x.jpg`` -> ``data/depth/x.png``), 16-bit PNG normalised to [0, 1], larger = farther.
`training/prepare_clean_depth.py` writes such maps from SOTS pairs, RGB-D/Middlebury ground
truth or a user depth model. Clean images without depth are an error that lists them (depth is
not estimated on the fly: a haze prior cannot see depth in a clean image).

`unpaired_dataset` yields ``((clean, depth), hazy)``: clean + depth go through `paired_dataset`
(cropped, flipped and rotated identically), hazy images through `image_dataset`, each shuffled
and cropped independently with its own seed, both repeated forever.
"""

import glob
import os

from keras_dehaze.data.image_io import IMAGE_EXTENSIONS, read_image
from keras_dehaze.data.pairing import DatasetError, Pair, _is_image, _listing, list_images, natural_key

DEPTH_SUFFIX = "_depth"


def _depth_candidates(folder, stem):
    sibling = os.path.join(os.path.dirname(os.path.abspath(folder)), "depth")
    for ext in (".png",) + tuple(e for e in IMAGE_EXTENSIONS if e != ".png"):
        yield os.path.join(folder, stem + DEPTH_SUFFIX + ext)
    for ext in (".png", ".tif", ".tiff"):
        yield os.path.join(sibling, stem + ext)


def find_clean_depth(folder, check=3):
    """Pairs (depth path, clean path) for every clean image of `folder`.

    Returned as `Pair(hazy=depth, clear=clean, scene=stem)` so that `paired_dataset` crops depth
    and image together (as `resynthesis.prepare_depth_maps` does).

    Args:
        folder: folder of clean images (``*_depth.*`` files in it are depth maps, not images).
        check: how many depth maps to read to check they are normalised (max >= 0.5); raw
            sensor maps (uint16 millimetres) would otherwise give almost no haze.

    Raises:
        DatasetError: images without depth (listed), or unnormalised depth maps.
    """
    folder = os.fspath(folder)
    images = [p for p in list_images(folder)
              if not os.path.splitext(os.path.basename(p))[0].endswith(DEPTH_SUFFIX)]
    if not images:
        raise DatasetError(f"{folder} holds only depth maps, no clean images.")
    pairs, missing = [], []
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        depth = next((c for c in _depth_candidates(folder, stem) if os.path.isfile(c)), None)
        if depth is None:
            missing.append(os.path.basename(path))
        else:
            pairs.append(Pair(hazy=depth, clear=path, scene=stem))
    if missing:
        sibling = os.path.join(os.path.dirname(os.path.abspath(folder)), "depth")
        raise DatasetError(
            f"{len(missing)} clean image(s) in {folder} have no depth map (looked for <stem>_depth.png "
            f"beside them and <stem>.png in {sibling}): {_listing(missing)}. Write them with "
            f"training/prepare_clean_depth.py (from SOTS pairs, RGB-D/Middlebury ground truth or a "
            f"depth model), or drop those images.")
    for pair in pairs[:check]:
        high = float(read_image(pair.hazy).max())
        if high < 0.5:
            raise DatasetError(
                f"{pair.hazy}: depth map maximum is {high:.3f} of the 16-bit range; depth maps must be "
                f"normalised to [0, 1] (raw sensor depth in millimetres?). Convert them with "
                f"training/prepare_clean_depth.py.")
    return pairs


def unpaired_dataset(clean_depth, hazy_paths, batch_size, crop_size=None, augment=True, seed=0, cache=False):
    """Endless batches ``((clean [B,H,W,3], depth [B,H,W,1]), hazy [B,H,W,3])`` in [0, 1].

    Args:
        clean_depth: `Pair(hazy=depth, clear=clean)` items (from `find_clean_depth` or
            `resynthesis.prepare_depth_maps`) or (depth, clean) path tuples.
        hazy_paths: real hazy image paths; empty gives ``(clean, depth)`` batches only.
        batch_size, crop_size, augment, cache: as `paired_dataset` (same for both streams).
        seed: the clean stream uses `seed`, the hazy one `seed + 1` (independent crops/order).
    """
    from keras_dehaze.data.pipeline import image_dataset, paired_dataset

    clean = paired_dataset(clean_depth, batch_size, crop_size=crop_size, augment=augment, shuffle=True,
                           seed=seed, repeat=True, cache=cache)
    clean = clean.map(lambda depth, image: (image, depth[..., :1]))
    if not hazy_paths:
        return clean
    hazy = image_dataset(list(hazy_paths), batch_size, crop_size=crop_size, augment=augment, shuffle=True,
                         seed=seed + 1, repeat=True, cache=cache)
    from keras_dehaze.backend import tf

    return tf.data.Dataset.zip((clean, hazy))


def list_hazy(folders):
    """Real hazy image paths of one or more folders (RTTS ``JPEGImages/`` handled).

    An entry may also be a single image file or a glob pattern of image files, e.g.
    ``sots-indoor/hazy/140[5-8]_*.png`` (some scenes of a paired set as unpaired hazy images).
    A path listed twice is kept once.

    Raises:
        DatasetError: a folder without images, a missing path, a file that is not an image, or a
            pattern that matches no image.
    """
    paths = []
    for entry in folders:
        entry = os.fspath(entry)
        if os.path.isdir(entry):
            paths += list_images(entry)
        elif os.path.isfile(entry):
            if not _is_image(os.path.dirname(entry) or ".", os.path.basename(entry)):
                raise DatasetError(f"hazy image {entry} is not an image file ({', '.join(IMAGE_EXTENSIONS)}).")
            paths.append(entry)
        elif glob.has_magic(entry):
            matches = [p for p in glob.glob(entry) if _is_image(os.path.dirname(p) or ".", os.path.basename(p))]
            if not matches:
                raise DatasetError(f"hazy pattern {entry} matches no image file ({', '.join(IMAGE_EXTENSIONS)}).")
            paths += sorted(matches, key=natural_key)
        else:
            paths += list_images(entry)  # raises "does not exist"
    return list(dict.fromkeys(paths))


__all__ = ["DEPTH_SUFFIX", "find_clean_depth", "list_hazy", "unpaired_dataset"]
