"""Atomic file writes: write a temporary file beside the target, then ``os.replace`` it into place.

``os.replace`` is atomic on POSIX and Windows within one file system, so a reader (or a later
run) sees either the old file or the complete new one, never a half-written file, whatever
stops the writer: an exception, Ctrl-C, a full disk. The temporary file is removed when the
write fails for any reason (``KeyboardInterrupt`` included); only a hard kill (SIGKILL, power
loss) can leave it behind, under a name that is never the target's.

Standard library only: the on-device runner (``keras_dehaze.edge.runner``) uses it.

Usage::

    from keras_dehaze.atomic import atomic_open, atomic_path, atomic_write

    atomic_write("report.json", json.dumps(report))     # str (UTF-8) or bytes
    with atomic_open("labels.npz") as f:                 # a binary file object
        np.savez(f, labels=labels)
    with atomic_path("best.keras", tmp="best.keras.tmp.keras") as tmp:
        model.save(tmp)                                  # for writers that take a path
"""

import contextlib
import os
import uuid

__all__ = ["atomic_open", "atomic_path", "atomic_write", "temporary_path"]


def temporary_path(path):
    """A unique hidden name beside ``path``: ``<folder>/.<name>.<8 hex digits>.tmp``.

    Same folder as ``path``, so ``os.replace`` never crosses file systems; hidden, so folder
    listings (``*.png``, ``*.keras``) never pick it up.
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_path(path, tmp=None):
    """Yields a temporary path to write instead of ``path``; moves it onto ``path`` when the block
    ends normally, removes it when the block raises (any exception, Ctrl-C included).

    Args:
        path: the file to (re)place.
        tmp: the temporary path to use (default ``temporary_path(path)``, unique). Give a fixed
            name when the writer needs a certain extension (Keras saves only to ``*.keras``) or
            when a leftover from a killed run should be overwritten by the next write rather than
            accumulate. It must be on the file system of ``path``.
    """
    path = os.fspath(path)
    tmp = temporary_path(path) if tmp is None else os.fspath(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            if os.path.lexists(tmp):
                os.remove(tmp)
        raise


def _fsync_folder(folder):
    """Makes a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path, mode="wb", tmp=None, fsync=False, encoding=None):
    """A file object (``mode`` "wb" or "w") whose content replaces ``path`` atomically when the
    block ends without an exception (see ``atomic_path``; ``tmp`` likewise).

    The file is created with mode 0o666 minus the umask, as ``open`` does (``tempfile.mkstemp``
    would leave the result readable by its owner only). ``fsync=True`` flushes the data and the
    rename to disk before returning (for files that must survive a power loss).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    exclusive = tmp is None  # a unique name must not exist yet; a fixed one may be a leftover
    with atomic_path(path, tmp) as tmp_path:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
        flags |= getattr(os, "O_BINARY", 0)  # Windows: no newline translation below io's own
        fd = os.open(tmp_path, flags, 0o666)
        text = {"encoding": encoding or "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **text) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    if fsync:
        _fsync_folder(os.path.dirname(os.path.abspath(os.fspath(path))))


def atomic_write(path, data, tmp=None, fsync=False, encoding="utf-8"):
    """Writes ``data`` (bytes, or str encoded with ``encoding``) to ``path`` atomically."""
    if isinstance(data, str):
        with atomic_open(path, "w", tmp=tmp, fsync=fsync, encoding=encoding) as f:
            f.write(data)
    else:
        with atomic_open(path, "wb", tmp=tmp, fsync=fsync) as f:
            f.write(data)
