"""Finding (hazy, clear) pairs in dataset folders, and holding out whole scenes for validation.

Layouts:
- "reside": `<root>/hazy/<id>_<k>[_<beta>].<ext>` with `<root>/clear/<id>.<ext>` (or `GT/`):
  the clear image is the one whose stem is the hazy name before the first "_"; extensions may
  differ (SOTS-outdoor: hazy .jpg, clear .png). RESIDE ITS/OTS/SOTS.
- "same_name": `<root>/hazy/` with `<root>/GT/` (or `clear/`) holding files of equal stems
  (Dense-Haze, NH-HAZE repacks, and `{train,test}/{GT,hazy}` when given the split folder).
- "ntire": one folder of `NN_hazy.<ext>` and `NN_GT.<ext>` (suffix case-insensitive).

Folder names are matched case-insensitively; hidden files and non-image files (Thumbs.db,
README) are ignored. This module has no TensorFlow dependency.
"""

import dataclasses
import os
import random
import re
import warnings

from keras_dehaze.data.image_io import IMAGE_EXTENSIONS

LAYOUTS = ("auto", "reside", "same_name", "ntire")
_HAZY_DIRS = ("hazy",)
_CLEAR_DIRS = ("clear", "gt")
_NTIRE_NAME = re.compile(r"^(?P<id>.+)_(?P<kind>hazy|gt)$", re.IGNORECASE)
_MAX_LISTED = 10  # how many offending files an error message lists before "... and N more"


class DatasetError(ValueError):
    """A dataset folder is missing, empty, incomplete or in a layout we cannot recognise."""


@dataclasses.dataclass(frozen=True)
class Pair:
    """One training/evaluation example.

    `scene` is the clear image's stem: every haze level of one RESIDE scene shares it, which is
    what hold-out-by-scene validation needs (otherwise the same scene leaks into both splits).
    """

    hazy: str
    clear: str
    scene: str


def natural_key(text):
    """Sort key that orders "1400_2" before "1400_10" (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _listing(names, limit=_MAX_LISTED):
    """'a, b, c and 12 more' for error messages."""
    names = list(names)
    text = ", ".join(names[:limit])
    return text + (f" ... and {len(names) - limit} more" if len(names) > limit else "")


def _is_image(folder, name):
    return (not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
            and os.path.isfile(os.path.join(folder, name)))


def _image_names(folder):
    """Image file names directly inside `folder`, naturally sorted."""
    return sorted((n for n in os.listdir(folder) if _is_image(folder, n)), key=natural_key)


def _subdirs(folder):
    return sorted(n for n in os.listdir(folder)
                  if not n.startswith(".") and os.path.isdir(os.path.join(folder, n)))


def _check_dir(folder, what="dataset folder"):
    folder = os.fspath(folder)
    if not os.path.exists(folder):
        raise DatasetError(f"{what} {folder} does not exist.")
    if not os.path.isdir(folder):
        raise DatasetError(f"{what} {folder} is not a directory.")
    return folder


def _find_child(root, candidates, role):
    """The single child directory whose lower-cased name is in `candidates`, or None."""
    found = [n for n in _subdirs(root) if n.lower() in candidates]
    if len(found) > 1:
        raise DatasetError(f"{root}: ambiguous {role} folder, found {found}; keep only one.")
    return os.path.join(root, found[0]) if found else None


def _describe(root):
    """What a folder contains, for 'unknown layout' errors."""
    subdirs, images = _subdirs(root), _image_names(root)
    text = f"subfolders [{_listing(subdirs)}]" if subdirs else "no subfolders"
    text += f", {len(images)} image file(s)"
    if images:
        text += f" (e.g. {_listing(images, 3)})"
    splits = [d for d in subdirs if d.lower() in ("train", "test", "val", "valid")]
    if splits:
        text += (f". It looks like a split dataset: pass one split folder, e.g. "
                 f"{os.path.join(root, splits[0])}")
    return text


def _stem(name):
    return os.path.splitext(name)[0]


def _index_by_stem(folder, names):
    """stem -> path; two files with one stem (0001.png and 0001.jpg) would make pairing guess."""
    index, clashes = {}, []
    for name in names:
        stem = _stem(name)
        if stem in index:
            clashes.append(name)
        index[stem] = os.path.join(folder, name)
    if clashes:
        raise DatasetError(f"{folder}: several ground-truth files share a name stem "
                           f"({_listing(clashes)}); pairing would be ambiguous.")
    return index


def _missing_gt_error(missing, hazy_dir, clear_dir, rule):
    return DatasetError(
        f"{len(missing)} hazy file(s) in {hazy_dir} have no ground truth in {clear_dir} "
        f"({rule}): {_listing(os.path.basename(m) for m in missing)}. "
        f"Pass allow_missing_gt=True to skip them.")


def _match(hazy_paths, clear_index, key, hazy_dir, clear_dir, rule, allow_missing_gt):
    """Pairs each hazy path with clear_index[key(stem)]; handles missing ground truth."""
    pairs, missing = [], []
    for hazy in hazy_paths:
        clear = clear_index.get(key(_stem(os.path.basename(hazy))))
        if clear is None:
            missing.append(hazy)
        else:
            pairs.append(Pair(hazy=hazy, clear=clear, scene=_stem(os.path.basename(clear))))
    if missing and (not allow_missing_gt or not pairs):
        raise _missing_gt_error(missing, hazy_dir, clear_dir, rule)
    if missing:
        warnings.warn(str(_missing_gt_error(missing, hazy_dir, clear_dir, rule))
                      .replace("Pass allow_missing_gt=True to skip them.", "Skipped."))
    return pairs


def _reside_key(stem):
    return stem.split("_", 1)[0]


def _two_folder_pairs(root, layout, allow_missing_gt):
    hazy_dir = _find_child(root, _HAZY_DIRS, "hazy")
    clear_dir = _find_child(root, _CLEAR_DIRS, "ground-truth")
    if hazy_dir is None or clear_dir is None:
        raise DatasetError(f"{root}: layout '{layout}' expects subfolders hazy/ and clear/ "
                           f"(or GT/); found {_describe(root)}.")
    hazy_names, clear_names = _image_names(hazy_dir), _image_names(clear_dir)
    for folder, names in ((hazy_dir, hazy_names), (clear_dir, clear_names)):
        if not names:
            raise DatasetError(f"{folder} contains no images ({', '.join(IMAGE_EXTENSIONS)}); "
                               f"layout '{layout}' expects hazy/ and clear/ (or GT/) image "
                               f"folders.")
    clear_index = _index_by_stem(clear_dir, clear_names)
    if layout == "auto":
        # Equal stems win (a same-name set never needs the prefix rule); otherwise RESIDE.
        exact = sum(_stem(n) in clear_index for n in hazy_names)
        prefix = sum(_reside_key(_stem(n)) in clear_index for n in hazy_names)
        if exact == 0 and prefix == 0:
            raise DatasetError(
                f"{root}: no hazy file matches a ground-truth file, neither by equal names nor "
                f"by the RESIDE rule (<id>_<k>.ext -> <id>.ext). hazy: "
                f"{_listing(hazy_names, 3)}; clear: {_listing(clear_names, 3)}.")
        layout = "same_name" if exact >= prefix else "reside"
    if layout == "reside":
        key, rule = _reside_key, "RESIDE rule: clear = <name before the first '_'>.<any ext>"
    else:
        key, rule = (lambda stem: stem), "same-name rule: clear has the hazy file's stem"
    hazy_paths = [os.path.join(hazy_dir, n) for n in hazy_names]
    return _match(hazy_paths, clear_index, key, hazy_dir, clear_dir, rule, allow_missing_gt)


def _ntire_pairs(root, allow_missing_gt):
    hazy_paths, gt_index, clashes = [], {}, []
    for name in _image_names(root):
        match = _NTIRE_NAME.match(_stem(name))
        if not match:
            continue
        if match["kind"].lower() == "hazy":
            hazy_paths.append(os.path.join(root, name))
        elif match["id"] in gt_index:
            clashes.append(name)
        else:
            gt_index[match["id"]] = os.path.join(root, name)
    if clashes:
        raise DatasetError(f"{root}: several ground-truth files for one id ({_listing(clashes)}); "
                           f"pairing would be ambiguous.")
    if not hazy_paths:
        raise DatasetError(f"{root}: layout 'ntire' expects files NN_hazy.<ext> and NN_GT.<ext>; "
                           f"found {_describe(root)}.")

    def key(stem):
        return _NTIRE_NAME.match(stem)["id"]

    return _match(hazy_paths, gt_index, key, root, root,
                  "NTIRE rule: NN_hazy.<ext> -> NN_GT.<ext>", allow_missing_gt)


def find_pairs(root, layout="auto", allow_missing_gt=False):
    """Finds the (hazy, clear) pairs of a dataset folder.

    Args:
        root: the dataset folder (for `{train,test}/{GT,hazy}` sets, the split folder).
        layout: "auto" (detect), "reside", "same_name" or "ntire" (see the module docstring).
        allow_missing_gt: skip hazy files without ground truth (with a warning) instead of
            raising.

    Returns:
        list of `Pair`, naturally sorted by scene, then hazy file name.

    Raises:
        DatasetError: root missing, empty folders, hazy files without ground truth (listed),
            ambiguous ground truth, or an unrecognised layout (describing what was found).
    """
    root = _check_dir(root)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    if layout == "auto":
        if _find_child(root, _HAZY_DIRS, "hazy") is not None:
            layout = "auto_two_folder"
        elif any(_NTIRE_NAME.match(_stem(n)) for n in _image_names(root)):
            layout = "ntire"
        else:
            raise DatasetError(
                f"{root}: unknown dataset layout. Expected hazy/ + clear/ (or GT/) subfolders "
                f"(RESIDE or same-name) or NN_hazy/NN_GT files (NTIRE); found {_describe(root)}.")
    if layout == "ntire":
        pairs = _ntire_pairs(root, allow_missing_gt)
    else:
        pairs = _two_folder_pairs(root, "auto" if layout == "auto_two_folder" else layout,
                                  allow_missing_gt)
    return sorted(pairs, key=lambda p: (natural_key(p.scene), natural_key(p.hazy)))


def split_by_scene(pairs, val_scenes=None, val_fraction=None, seed=0):
    """Splits pairs into (train, val) holding out whole scenes (all haze levels of a scene).

    Give exactly one of `val_scenes` (scene names, i.e. clear-image stems) or `val_fraction`
    (fraction of scenes, at least one, chosen reproducibly from `seed`). Order is preserved.
    """
    pairs = list(pairs)
    if (val_scenes is None) == (val_fraction is None):
        raise ValueError("split_by_scene: give exactly one of val_scenes or val_fraction.")
    scenes = sorted({p.scene for p in pairs}, key=natural_key)
    if val_scenes is not None:
        held_out = {val_scenes} if isinstance(val_scenes, str) else {str(s) for s in val_scenes}
        unknown = sorted(held_out - set(scenes), key=natural_key)
        if unknown:
            raise DatasetError(f"split_by_scene: unknown scene(s) {_listing(unknown)}; the pairs "
                               f"have scenes {_listing(scenes)}.")
    else:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
        if len(scenes) < 2:
            raise DatasetError(f"split_by_scene: need at least 2 scenes to hold one out, "
                               f"found {len(scenes)}.")
        count = min(max(1, round(val_fraction * len(scenes))), len(scenes) - 1)
        held_out = set(random.Random(seed).sample(scenes, count))
    train = [p for p in pairs if p.scene not in held_out]
    val = [p for p in pairs if p.scene in held_out]
    if not train:
        raise DatasetError("split_by_scene: every scene was held out; nothing left to train on.")
    return train, val


def list_images(folder, recursive=False):
    """Image paths in a folder without ground truth (unpaired sets, real hazy photos).

    If the folder itself has no images but a `JPEGImages/` subfolder (RTTS, VOC layout), that
    subfolder is used. Hidden and non-image files are skipped. Naturally sorted.
    """
    folder = _check_dir(folder, "image folder")
    if recursive:
        paths = []
        for parent, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            paths += [os.path.join(parent, n) for n in names if _is_image(parent, n)]
        paths.sort(key=lambda p: natural_key(os.path.relpath(p, folder)))
    else:
        names = _image_names(folder)
        if not names:
            voc = _find_child(folder, ("jpegimages",), "JPEGImages")
            if voc is not None:
                folder, names = voc, _image_names(voc)
        paths = [os.path.join(folder, n) for n in names]
    if not paths:
        hint = "" if recursive else " (pass recursive=True to search subfolders)"
        raise DatasetError(f"{folder} contains no images ({', '.join(IMAGE_EXTENSIONS)}); "
                           f"found {_describe(folder)}{hint}.")
    return paths


__all__ = ["LAYOUTS", "DatasetError", "Pair", "find_pairs", "list_images", "natural_key",
           "split_by_scene"]
