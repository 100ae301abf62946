"""Colabator's optimal label pool: the best pseudo-label so far for every real image, on disk.

Per real-image id the pool keeps ONE label: the pseudo-dehazed image, its trust-weight map and
two image-level scores, the haze density D (LOWER = CLEARER) and the quality Q (HIGHER =
BETTER). ``offer`` stores a new label when the id has none yet, and otherwise replaces the
stored one only when the new label is better in BOTH scores, strictly:

    replace  <=>  D_new < D_old  and  Q_new > Q_old

(Algorithm 1 of the paper with our score directions; the reference code uses <=/>=, so equal
scores replace there and do not here.)

Storage (``directory``):
- one ``<safe id>-<sha1[:12]>.npz`` per id: ``image`` [H, W, 3] float16, ``weights`` [H, W]
  float16, ``density``, ``quality``, ``updates`` (how many times this id was stored) and the
  ``id`` itself. Each file is written to a hidden temporary name in the same directory and
  moved into place with ``os.replace`` (atomic on POSIX), so a reader or a restart sees either
  the old or the new label, never a half-written one.
- ``index.json``: the scores, file names and modification times of all entries plus the pool's
  ``meta`` (e.g. the label size it was built for) and the lifetime replacement count; also
  written atomically (temporary file + ``os.replace``), after every ``offer`` by default or once
  per ``offer_many``.
- The .npz files are the source of truth. On (re)open the index is reconciled with them: an .npz
  whose mtime differs from the index's record (written after the last index flush, e.g. killed
  in between) is re-read; entries whose file is gone are dropped; leftover temporary files of a
  crashed writer are ignored (and deleted when the pool is writable). ``fsync=True`` also
  flushes files and the directory to the device (survives power loss, not only a killed
  process; slower).

Memory: only the index (a few numbers per id) and an LRU of the ``cache_size`` most recently
used labels are held in RAM; everything else is read from disk on demand.

Several workers (tf.distribute multi-worker): the pool is NOT a multi-writer store. Open it
writable on the chief only (task 0), which runs the teacher refresh and writes; other workers
open the same directory (shared filesystem) with ``writable=False`` and call ``reload()`` after
each refresh (labels of one refresh may then be seen a few steps late, which Colabator
tolerates: a label is only ever replaced by a better one). Without a shared filesystem, give
each worker its own directory (``pool/worker_<k>``) holding the labels of its own shard of the
real images; the pools then never need to agree. Within one process the pool is thread-safe
(tf.data reader threads call ``get`` while the training loop calls ``offer``).

Example:
    >>> pool = OptimalLabelPool("runs/x/label_pool")
    >>> pool.offer("rtts/0001.png", image, weights, density=0.21, quality=63.0)   # True: stored
    >>> pool.offer("rtts/0001.png", image2, weights2, density=0.25, quality=70.0)  # False: hazier
    >>> batch = pool.get(["rtts/0001.png"])     # {"image": [1, H, W, 3], "weights": [1, H, W], ...}
    >>> pool.stats()                            # count, replaced since reset, mean scores, ...
"""

import collections
import hashlib
import json
import math
import os
import re
import threading
import uuid
import warnings

import numpy as np

from keras_dehaze.atomic import atomic_open

INDEX_NAME = "index.json"
_TMP_PREFIX = ".tmp-"  # temporary files: hidden, never matched as labels
_FORMAT_VERSION = 1


class LabelPoolError(ValueError):
    """The pool directory is unusable or was built for different settings."""


def label_filename(label_id):
    """A filesystem-safe, collision-free file name for an id (readable prefix + sha1)."""
    label_id = str(label_id)
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", label_id).strip("_")[:80] or "label"
    return f"{safe}-{hashlib.sha1(label_id.encode('utf-8')).hexdigest()[:12]}.npz"


def is_better(density, quality, old_density, old_quality):
    """True when (density, quality) is strictly clearer AND strictly better than the old pair."""
    return density < old_density and quality > old_quality


class OptimalLabelPool:
    """Persistent best-pseudo-label store; see the module docstring.

    Args:
        directory: where the .npz files and index.json live (created if writable).
        cache_size: labels kept in the in-memory LRU (>= 0).
        writable: False opens read-only (non-chief workers); ``offer`` then raises.
        fsync: also fsync files and the directory (power-loss durability).
        meta: a dict stored in the index on creation and checked on reopen (e.g.
            ``{"label_size": [256, 256]}``); a mismatch raises ``LabelPoolError``.
        autoflush: write index.json after every successful ``offer`` (``offer_many`` always
            writes it once at the end).
    """

    def __init__(self, directory, cache_size=8, writable=True, fsync=False, meta=None, autoflush=True):
        if int(cache_size) < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.directory = os.fspath(directory)
        self.cache_size = int(cache_size)
        self.writable = bool(writable)
        self.fsync = bool(fsync)
        self.autoflush = bool(autoflush)
        self._lock = threading.RLock()
        self._cache = collections.OrderedDict()  # id -> (image f16, weights f16)
        self._entries = {}  # id -> {"file", "density", "quality", "updates", "mtime_ns"}
        self._meta = dict(meta or {})
        self.total_replacements = 0
        self._dirty = False
        self.reset_stats()
        if self.writable:
            os.makedirs(self.directory, exist_ok=True)
        elif not os.path.isdir(self.directory):
            raise LabelPoolError(f"label pool directory {self.directory} does not exist (opened read-only)")
        self._load(meta)

    # ------------------------------------------------------------------ loading
    def _load(self, expected_meta):
        index_path = os.path.join(self.directory, INDEX_NAME)
        index = {}
        if os.path.exists(index_path):
            try:
                with open(index_path) as f:
                    index = json.load(f)
            except (OSError, ValueError) as e:  # only possible if written by something else
                warnings.warn(f"label pool index {index_path} is unreadable ({e}); rebuilding it from the .npz files")
                index = {}
        stored_meta = index.get("meta")
        if stored_meta is not None and expected_meta is not None:
            expected = json.loads(json.dumps(expected_meta))  # tuples -> lists, as stored
            if stored_meta != expected:
                raise LabelPoolError(
                    f"label pool {self.directory} was built with {stored_meta}, but {expected} was asked for; "
                    "use another pool directory (or delete this one) for the new settings")
        if stored_meta is not None:
            self._meta = stored_meta
        self.total_replacements = int(index.get("total_replacements", 0))
        entries = {k: dict(v) for k, v in index.get("entries", {}).items()}
        by_file = {v["file"]: k for k, v in entries.items()}

        on_disk = set()
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if name.startswith(_TMP_PREFIX):
                if self.writable:  # a crashed writer's leftover: never a label
                    try:
                        os.remove(path)
                    except OSError:
                        pass
                continue
            if not name.endswith(".npz"):
                continue
            on_disk.add(name)
            mtime = os.stat(path).st_mtime_ns
            known = by_file.get(name)
            if known is not None and entries[known].get("mtime_ns") == mtime:
                continue
            try:
                entry = self._read_header(path)
            except Exception as e:  # noqa: BLE001 - a foreign/corrupt file must not stop training
                warnings.warn(f"label pool: skipping unreadable {path}: {e}")
                continue
            entry["mtime_ns"] = mtime
            entries[entry.pop("id")] = entry
        self._entries = {k: v for k, v in entries.items() if v["file"] in on_disk}
        self._dirty = self._entries != index.get("entries", {}) or not os.path.exists(index_path)
        if self.writable and self._dirty:
            self.flush()

    @staticmethod
    def _read_header(path):
        with np.load(path, allow_pickle=False) as data:
            return {
                "id": str(data["id"]),
                "file": os.path.basename(path),
                "density": float(data["density"]),
                "quality": float(data["quality"]),
                "updates": int(data["updates"]),
            }

    def reload(self):
        """Re-reads the directory (read-only workers, after the chief's refresh)."""
        with self._lock:
            self._cache.clear()
            self._load(None)

    # ------------------------------------------------------------------ writing
    def _atomic_write(self, final_path, write):
        tmp = os.path.join(self.directory, f"{_TMP_PREFIX}{uuid.uuid4().hex}-{os.path.basename(final_path)}")
        with atomic_open(final_path, "wb", tmp=tmp, fsync=self.fsync) as f:
            write(f)

    def offer(self, label_id, image, weights, density, quality, flush=None):
        """Stores the label if the id has none or if it is better in BOTH scores.

        Args:
            label_id: the real image's id (any string).
            image: [H, W, 3] pseudo-label in [0, 1].
            weights: [H, W] or [H, W, 1] trust-weight map.
            density: image-level haze density, lower = clearer.
            quality: image-level quality, higher = better.
            flush: write index.json now (default: ``autoflush``).

        Returns:
            True if the label was stored (new id or replacement), False if the old one stays.
        """
        if not self.writable:
            raise LabelPoolError(f"label pool {self.directory} was opened read-only")
        density, quality = float(density), float(quality)
        if not (math.isfinite(density) and math.isfinite(quality)):
            raise ValueError(f"label {label_id!r}: scores must be finite, got density={density}, quality={quality}")
        image = np.asarray(image, np.float32)
        weights = np.asarray(weights, np.float32)
        if weights.ndim == 3 and weights.shape[-1] == 1:
            weights = weights[..., 0]
        if image.ndim != 3 or image.shape[-1] != 3 or weights.shape != image.shape[:2]:
            raise ValueError(f"label {label_id!r}: expected image [H, W, 3] and weights [H, W], got "
                             f"{image.shape} and {weights.shape}")
        label_id = str(label_id)
        with self._lock:
            self.offers += 1
            old = self._entries.get(label_id)
            if old is not None and not is_better(density, quality, old["density"], old["quality"]):
                self.rejected += 1
                return False
            name = label_filename(label_id)
            updates = 1 + (old["updates"] if old else 0)
            image16, weights16 = image.astype(np.float16), weights.astype(np.float16)
            path = os.path.join(self.directory, name)
            self._atomic_write(path, lambda f: np.savez(
                f, image=image16, weights=weights16, density=np.float64(density), quality=np.float64(quality),
                updates=np.int64(updates), id=np.array(label_id)))
            self._entries[label_id] = {"file": name, "density": density, "quality": quality, "updates": updates,
                                       "mtime_ns": os.stat(path).st_mtime_ns}
            self._remember(label_id, image16, weights16)
            if old is None:
                self.added += 1
            else:
                self.replaced += 1
                self.total_replacements += 1
            self._dirty = True
            if self.autoflush if flush is None else flush:
                self.flush()
            return True

    def offer_many(self, items):
        """``offer`` for (id, image, weights, density, quality) tuples; one index write at the end."""
        with self._lock:
            try:
                return [self.offer(*item, flush=False) for item in items]
            finally:
                self.flush()

    def flush(self):
        """Writes index.json atomically (no-op when nothing changed)."""
        if not self.writable:
            return
        with self._lock:
            if not self._dirty:
                return
            index = {"version": _FORMAT_VERSION, "meta": self._meta, "total_replacements": self.total_replacements,
                     "entries": self._entries}
            data = json.dumps(index, indent=1, sort_keys=True).encode("utf-8")
            self._atomic_write(os.path.join(self.directory, INDEX_NAME), lambda f: f.write(data))
            self._dirty = False

    # ------------------------------------------------------------------ reading
    def _remember(self, label_id, image16, weights16):
        if self.cache_size == 0:
            return
        self._cache[label_id] = (image16, weights16)
        self._cache.move_to_end(label_id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _arrays(self, label_id):
        cached = self._cache.get(label_id)
        if cached is not None:
            self._cache.move_to_end(label_id)
            return cached
        path = os.path.join(self.directory, self._entries[label_id]["file"])
        with np.load(path, allow_pickle=False) as data:
            arrays = (data["image"], data["weights"])
        self._remember(label_id, *arrays)
        return arrays

    def get_one(self, label_id, default=None):
        """(image [H, W, 3] f32, weights [H, W] f32, density, quality) or ``default``."""
        label_id = str(label_id)
        with self._lock:
            entry = self._entries.get(label_id)
            if entry is None:
                return default
            image, weights = self._arrays(label_id)
            return image.astype(np.float32), weights.astype(np.float32), entry["density"], entry["quality"]

    def get(self, ids):
        """Stacked labels of ``ids`` (equal sizes): dict with "image" [B, H, W, 3], "weights"
        [B, H, W] (float32), "density", "quality" [B]. Raises KeyError naming missing ids."""
        ids = [str(i) for i in ids]
        with self._lock:
            missing = [i for i in ids if i not in self._entries]
            if missing:
                raise KeyError(f"no label in the pool for {missing[:10]}{' ...' if len(missing) > 10 else ''}")
            labels = [self.get_one(i) for i in ids]
        return {
            "image": np.stack([lab[0] for lab in labels]),
            "weights": np.stack([lab[1] for lab in labels]),
            "density": np.array([lab[2] for lab in labels], np.float32),
            "quality": np.array([lab[3] for lab in labels], np.float32),
        }

    def __contains__(self, label_id):
        return str(label_id) in self._entries

    def __len__(self):
        return len(self._entries)

    def ids(self):
        with self._lock:
            return sorted(self._entries)

    def cached_ids(self):
        """Ids whose arrays are in RAM (the LRU), oldest first."""
        with self._lock:
            return list(self._cache)

    @property
    def meta(self):
        return dict(self._meta)

    # ------------------------------------------------------------------ statistics
    def reset_stats(self):
        """Zeroes the counters reported by ``stats`` (offers, added, replaced, rejected)."""
        with self._lock:
            self.offers = self.added = self.replaced = self.rejected = 0

    def stats(self):
        """count, offers/added/replaced/rejected since the last reset, total_replacements (over the
        pool's lifetime, persisted), mean_density and mean_quality over the stored labels."""
        with self._lock:
            n = len(self._entries)
            density = [e["density"] for e in self._entries.values()]
            quality = [e["quality"] for e in self._entries.values()]
            return {
                "count": n,
                "offers": self.offers,
                "added": self.added,
                "replaced": self.replaced,
                "rejected": self.rejected,
                "total_replacements": self.total_replacements,
                "mean_density": float(np.mean(density)) if n else float("nan"),
                "mean_quality": float(np.mean(quality)) if n else float("nan"),
            }

    def __repr__(self):
        return f"OptimalLabelPool({self.directory!r}, {len(self)} labels)"


__all__ = ["INDEX_NAME", "LabelPoolError", "OptimalLabelPool", "is_better", "label_filename"]
