"""``keras-dehaze eval`` / ``python training/evaluate.py``: the report writer around evaluation."""

import os
import sys

from tqdm import tqdm

from keras_dehaze.atomic import atomic_write
from keras_dehaze.data.pairing import DatasetError, find_pairs, list_images
from keras_dehaze.evaluation import (
    CONVENTION, FULL_REFERENCE, evaluate_pairs, evaluate_unpaired, example_grid, markdown_table, summarize,
    write_csv,
)
from keras_dehaze.inference import BASELINES, ModelLoadError, load_dehazer, resolve_name


NO_REFERENCE_NOTE = (
    "haze density = mean dark channel (7x7 window; lower = clearer; a physical prior, not the "
    "paper's CLIP score); quality = 100 - BRISQUE (higher = better; the paper uses MUSIQ)"
)


def no_reference_scorers():
    """name -> fn(image) -> float for folders without ground truth (keras_dehaze.quality)."""
    from keras_dehaze.quality import build_density, build_quality

    density, quality = build_density(), build_quality()
    return {
        "haze_density": lambda image: float(density([image])[0]),
        "quality": lambda image: float(quality([image])[0]),
    }


def unique_names(dehazers, specs):
    """Distinct table rows for models whose file names clash (runs/a/best.keras, runs/b/best.keras):
    such models are named by their path instead."""
    names = [d.name for d in dehazers]
    for dehazer, spec in zip(dehazers, specs):
        if names.count(dehazer.name) > 1:
            dehazer.name = os.path.normpath(spec)


# Keys of a bundled network's JSON record (keras_dehaze/weights/<name>.json) that list the
# folders it was trained on, and the key listing the scenes it held out of training.
TRAINING_FOLDER_KEYS = ("trained_on", "real_hazy_without_gt")
HELD_OUT_KEY = "validation_scenes_held_out"
# Optional: {recorded folder: [scenes]} for folders that have gained scenes since the network was
# trained (only the listed ones were seen; without it, every scene not held out counts as seen).
TRAINED_SCENES_KEY = "trained_scenes"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _same_folder(folder, recorded):
    """True if ``folder`` is the recorded training folder: the same path (the record's relative
    paths are tried from the repository root and from the working directory) or the same folder
    name (a copy of the dataset elsewhere)."""
    real = os.path.realpath(folder)
    if os.path.isabs(recorded):
        candidates = [recorded]
    else:
        candidates = [os.path.join(_REPO_ROOT, recorded), os.path.join(os.getcwd(), recorded)]
    if any(os.path.realpath(c) == real for c in candidates):
        return True
    return os.path.basename(os.path.normpath(recorded)) == os.path.basename(os.path.normpath(folder))


def training_overlap(spec, folder, scenes):
    """``(preset name, recorded folder, sorted scenes)`` if the bundled network ``spec`` was
    trained on ``folder`` and ``scenes`` include scenes it did not hold out; else None.
    Records without the keys (or other models) give None."""
    from keras_dehaze import pretrained

    name = resolve_name(spec) if spec else pretrained.DEFAULT
    if name not in pretrained.available():
        return None
    try:
        meta = pretrained.metadata(name)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    for key in TRAINING_FOLDER_KEYS:
        for recorded in _as_list(meta.get(key)):
            if _same_folder(folder, recorded):
                held = set(_as_list(meta.get(HELD_OUT_KEY)))
                seen = sorted(s for s in set(scenes) if s not in held)
                trained = (meta.get(TRAINED_SCENES_KEY) or {}).get(recorded)
                if trained is not None:
                    seen = sorted(set(seen) & set(_as_list(trained)))
                return (name, recorded, seen) if seen else None
    return None


def warn_training_overlap(specs, folder, items, paired):
    """Prints one warning per bundled network that was trained on scenes being scored."""
    scenes = [p.scene for p in items] if paired else [os.path.splitext(os.path.basename(p))[0] for p in items]
    for spec in dict.fromkeys(specs):
        found = training_overlap(spec, folder, scenes)
        if not found:
            continue
        name, recorded, seen = found
        shown = ", ".join(seen[:12]) + (f", ... ({len(seen)} in all)" if len(seen) > 12 else "")
        print(f"warning: {folder}: the bundled model {name} was trained on this data ({recorded}); "
              f"{len(seen)} of the {len(set(scenes))} scenes scored here were not held out of its training "
              f"({shown}), so its scores on them are optimistic. Score held-out scenes only with --scenes.",
              file=sys.stderr)


def run_evaluation(args):
    requested = [resolve_name(m) for m in (args.model or ["aecrnet"])]
    specs = list(BASELINES) + [m for m in dict.fromkeys(requested) if m not in BASELINES]
    dehazers = []
    for spec in specs:
        try:
            dehazers.append(load_dehazer(spec, threads=args.threads, tile=getattr(args, "tile", None)))
        except (ModelLoadError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    unique_names(dehazers, specs)
    os.makedirs(args.output, exist_ok=True)
    sections, failures = [], 0
    for folder in args.datasets:
        name = os.path.basename(os.path.normpath(folder))
        bar = tqdm(desc=f"{name}", unit="image", disable=getattr(args, "quiet", False))

        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        try:
            try:
                items = find_pairs(folder)
                paired = True
            except DatasetError as pair_error:
                try:
                    items, paired = list_images(folder), False
                except DatasetError:
                    raise pair_error from None
            if paired and getattr(args, "scenes", None):
                wanted = {x.strip() for x in args.scenes.split(",")}
                items = [p for p in items if p.scene in wanted]
                if not items:
                    raise DatasetError(f"none of the scenes {sorted(wanted)} is in {folder}")
            items = items[: args.limit] if args.limit else items
            warn_training_overlap(specs, folder, items, paired)
            if paired:
                rows, examples = evaluate_pairs(items, dehazers, args.max_side, args.examples, progress)
                metrics = list(FULL_REFERENCE)
                notes = [CONVENTION]
            else:
                scorers = no_reference_scorers()
                rows, examples = evaluate_unpaired(items, dehazers, scorers, args.max_side, args.examples, progress)
                metrics = list(scorers)
                notes = ["no ground truth: no-reference scores", NO_REFERENCE_NOTE]
        except (DatasetError, ValueError, OSError) as e:
            bar.close()
            print(f"error: {folder}: {e}", file=sys.stderr)
            failures += 1
            continue
        bar.close()
        if args.max_side:
            notes.append(f"images downscaled so the longer side is at most {args.max_side} px")
        write_csv(rows, os.path.join(args.output, f"{name}.csv"))
        grid = example_grid(examples, os.path.join(args.output, f"{name}_examples.png"))
        table = summarize(rows, metrics)
        section = markdown_table(table, metrics, f"{name} ({len(items)} images, {'paired' if paired else 'no GT'})", notes)
        if grid:
            section += f"\n![examples]({os.path.basename(grid)})\n"
        sections.append(section)
        print(section)
    if sections:
        atomic_write(os.path.join(args.output, "report.md"), "# keras-dehaze evaluation\n\n" + "\n".join(sections))
        print(f"report: {os.path.join(args.output, 'report.md')}")
    return 1 if failures else 0
