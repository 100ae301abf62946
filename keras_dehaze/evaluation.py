"""Scores dehazers on benchmark folders and writes CSV, markdown and a PNG example grid.

Paired folders (RESIDE, {GT,hazy}, NTIRE: detected by ``find_pairs``) get full-reference PSNR,
SSIM and CIEDE2000 per image; folders of real hazy photos without ground truth get
no-reference scores (``keras_dehaze.quality``). The hazy input ("identity") and the dark channel
prior ("dcp") are always scored as baselines.
"""

import csv
import math
import os
import time

import cv2
import numpy as np

from keras_dehaze.atomic import atomic_open

from keras_dehaze.data.image_io import read_image, write_image
from keras_dehaze.metrics import CONVENTION, ciede2000, psnr, ssim

FULL_REFERENCE = ("psnr", "ssim", "ciede2000")
EXAMPLE_HEIGHT = 180  # rows of one image in the example grid


def _limit_size(image, max_side):
    """Downscale (area) so the longer side is at most max_side; None keeps full size."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def _thumbnail(image, height):
    """A copy of ``image`` scaled to ``height`` rows (area average): what the example grid keeps,
    so examples cost kilobytes instead of full-size float images."""
    h, w = image.shape[:2]
    if h <= height:
        return np.array(image, np.float32)
    return cv2.resize(np.asarray(image, np.float32), (max(1, round(w * height / h)), height),
                      interpolation=cv2.INTER_AREA)


def _grid_outputs(dehazer):
    """The identity baseline is the hazy input itself: the grid shows it once, as "hazy"."""
    return getattr(dehazer, "name", None) != "identity"


def evaluate_pairs(pairs, dehazers, max_side=None, keep_outputs=0, progress=None, example_height=EXAMPLE_HEIGHT):
    """Rows of per-image scores for every dehazer; also thumbnails of the first ``keep_outputs``.

    Streams: one image (its hazy input, ground truth and one output at a time) is in memory at
    once, so memory is bounded by the largest image, not by the number of images."""
    rows, examples = [], []
    for index, pair in enumerate(pairs):
        hazy = _limit_size(read_image(pair.hazy), max_side)
        clear = _limit_size(read_image(pair.clear), max_side)
        if hazy.shape != clear.shape:
            raise ValueError(f"{pair.hazy} {hazy.shape[:2]} and {pair.clear} {clear.shape[:2]} differ in size")
        keep = index < keep_outputs
        outputs = {}
        for dehazer in dehazers:
            start = time.perf_counter()
            restored = dehazer(hazy)
            np.clip(restored, 0.0, 1.0, out=restored)
            seconds = time.perf_counter() - start
            rows.append({
                "image": os.path.basename(pair.hazy), "model": dehazer.name,
                "psnr": psnr(restored, clear), "ssim": ssim(restored, clear),
                "ciede2000": ciede2000(restored, clear), "seconds": seconds,
            })
            if keep and _grid_outputs(dehazer):
                outputs[dehazer.name] = _thumbnail(restored, example_height)
            del restored
        if keep:
            examples.append((os.path.basename(pair.hazy), _thumbnail(hazy, example_height), outputs,
                             _thumbnail(clear, example_height)))
        del hazy, clear
        if progress:
            progress(index + 1, len(pairs))
    return rows, examples


def evaluate_unpaired(paths, dehazers, scorers, max_side=None, keep_outputs=0, progress=None,
                      example_height=EXAMPLE_HEIGHT):
    """No-reference rows: ``scorers`` maps a score name to ``fn(image) -> float``. Streams like
    ``evaluate_pairs``."""
    rows, examples = [], []
    for index, path in enumerate(paths):
        hazy = _limit_size(read_image(path), max_side)
        keep = index < keep_outputs
        outputs = {}
        for dehazer in dehazers:
            start = time.perf_counter()
            restored = dehazer(hazy)
            np.clip(restored, 0.0, 1.0, out=restored)
            row = {"image": os.path.basename(path), "model": dehazer.name, "seconds": time.perf_counter() - start}
            row.update({name: float(fn(restored)) for name, fn in scorers.items()})
            rows.append(row)
            if keep and _grid_outputs(dehazer):
                outputs[dehazer.name] = _thumbnail(restored, example_height)
            del restored
        if keep:
            examples.append((os.path.basename(path), _thumbnail(hazy, example_height), outputs, None))
        del hazy
        if progress:
            progress(index + 1, len(paths))
    return rows, examples


def summarize(rows, metrics):
    """Mean of each metric per model, in the order the models first appear."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    table = []
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        entry = {"model": model, "images": len(mine)}
        for m in metrics:
            values = [r[m] for r in mine if math.isfinite(r[m])]
            entry[m] = float(np.mean(values)) if values else float("nan")
        entry["seconds"] = float(np.mean([r["seconds"] for r in mine]))
        table.append(entry)
    return table


def write_csv(rows, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(table, metrics, title, notes=()):
    """A markdown section with the mean scores per model and the stated convention."""
    arrows = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "ciede2000": "CIEDE2000 ↓",
              "haze_density": "haze density ↓", "quality": "quality (100-BRISQUE) ↑"}
    header = ["model", "images"] + [arrows.get(m, m) for m in metrics] + ["s/image"]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for entry in table:
        cells = [entry["model"], str(entry["images"])]
        cells += [f"{entry[m]:.4f}" if m in ("ssim", "haze_density") else f"{entry[m]:.2f}" for m in metrics]
        cells.append(f"{entry['seconds']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _label(cell, text):
    """Writes ``text`` once, white on a dark box in the top-left corner (readable on any image)."""
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    cv2.rectangle(cell, (0, 0), (min(cell.shape[1] - 1, tw + 7), th + base + 5), (0, 0, 0), cv2.FILLED)
    cv2.putText(cell, text, (4, th + 3), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def example_grid(examples, path, height=EXAMPLE_HEIGHT):
    """PNG rows of hazy | each model | GT (when there is one), each panel labelled once.

    The hazy input appears once (the identity baseline is the same image). Every row is scaled
    to the same width, so rows of images with different shapes leave no gaps."""
    if not examples:
        return None
    rows = []
    for name, hazy, outputs, clear in examples:
        panels = [("hazy", hazy)] + [(k, v) for k, v in outputs.items() if k != "identity"]
        panels += [("GT", clear)] if clear is not None else []
        cells = []
        for label, image in panels:
            h, w = image.shape[:2]
            small = cv2.resize(np.asarray(image, np.float32), (max(1, round(w * height / h)), height),
                               interpolation=cv2.INTER_AREA)
            small = np.ascontiguousarray(np.clip(small * 255 + 0.5, 0, 255).astype(np.uint8))
            _label(small, label[:28])
            cells.append(small)
        rows.append(np.concatenate(cells, axis=1))
    width = max(r.shape[1] for r in rows)
    same = []
    for r in rows:  # narrower rows (other aspect ratio) are scaled up to the common width
        if r.shape[1] != width:
            r = cv2.resize(r, (width, max(1, round(r.shape[0] * width / r.shape[1]))), interpolation=cv2.INTER_LINEAR)
        same.append(r)
    write_image(path, np.concatenate(same, axis=0))
    return path


__all__ = [
    "CONVENTION", "FULL_REFERENCE", "evaluate_pairs", "evaluate_unpaired", "example_grid",
    "markdown_table", "summarize", "write_csv",
]
