"""Reads and writes PyTorch state-dict checkpoints (``.pth``) as numpy arrays, without PyTorch.

Two formats:
- zip (``torch.save`` since 1.6): ``<root>/data.pkl`` (a pickle of the state dict whose
  tensors are rebuilt by ``torch._utils._rebuild_tensor_v2`` from storages named by persistent
  ids) and ``<root>/data/<key>`` (raw little-endian storage bytes).
- legacy (``_use_new_zipfile_serialization=False``): five pickles in a row (magic number,
  protocol, system info, the state dict, the storage keys), then each storage as an 8-byte
  element count followed by its raw bytes, in the order of the keys.

Unpickling is restricted: only the globals a state dict needs are resolved (an ordered dict,
the tensor rebuild function and the typed storages); any other global is refused, so a
malicious checkpoint cannot run code. Tensors become numpy arrays with the stored shape and
strides (copied, C-contiguous).
"""

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_DTYPE_STORAGES = {np.dtype(v): k for k, v in STORAGE_DTYPES.items()}


class CheckpointError(ValueError):
    """A checkpoint cannot be read (not a state dict, a refused global, truncated data)."""


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *_):
    """numpy version of ``torch._utils._rebuild_tensor_v2`` (requires_grad, hooks ignored)."""
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[offset])
    itemsize = storage.dtype.itemsize
    needed = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset
    if needed > storage.size:
        raise CheckpointError(f"a tensor of shape {size} needs {needed} elements; its storage has {storage.size}")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[s * itemsize for s in stride])
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, *_):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(f"refused global {module}.{name} in the checkpoint (only state dicts of "
                                  f"tensors can be read)") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id in the checkpoint: {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unexpected storage type in the checkpoint: {storage_type!r}")
        return self._load_storage(key, storage_type.dtype, numel)


def load_state_dict(path):
    """Reads a PyTorch checkpoint into ``{key: numpy array}`` (keys in file order).

    A checkpoint that wraps the state dict (``{"state_dict": ...}`` or ``{"model": ...}``, as
    training scripts often save) is unwrapped.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a readable PyTorch checkpoint, or it needs a refused global.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if zipfile.is_zipfile(path):
        obj = _load_zip(path)
    else:
        obj = _load_legacy(path)
    return _as_state_dict(obj, path)


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: a zip file without a single data.pkl (not a PyTorch checkpoint)")
        root = pickles[0][: -len("data.pkl")]

        def load_storage(key, dtype, numel):
            try:
                raw = archive.read(f"{root}data/{key}")
            except KeyError:
                raise CheckpointError(f"{path}: storage {key!r} is missing from the archive") from None
            if len(raw) < numel * dtype.itemsize:
                raise CheckpointError(f"{path}: storage {key!r} is truncated")
            return np.frombuffer(raw, dtype=dtype.newbyteorder("<"), count=numel)

        with archive.open(pickles[0]) as f:
            return _unpickle(f, load_storage, path)


def _load_legacy(path):
    with open(path, "rb") as f:
        try:
            magic = pickle.load(f)
        except Exception:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a legacy pickle)") from None
        if magic != LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (wrong magic number)")
        pickle.load(f)  # protocol version
        pickle.load(f)  # system info
        pending = {}  # key -> (dtype, numel); filled while unpickling, data read afterwards

        def load_storage(key, dtype, numel):
            pending.setdefault(key, (dtype, numel, np.empty(numel, dtype)))
            return pending[key][2]

        obj = _unpickle(f, load_storage, path)
        keys = pickle.load(f)
        for key in keys:
            (count,) = struct.unpack("<q", f.read(8))
            dtype, numel, buffer = pending[str(key)]
            raw = f.read(count * dtype.itemsize)
            if len(raw) < count * dtype.itemsize or count < numel:
                raise CheckpointError(f"{path}: storage {key!r} is truncated")
            buffer[:] = np.frombuffer(raw, dtype=dtype.newbyteorder("<"), count=numel)
    # Tensors were rebuilt from the (then empty) buffers: rebuild again now that they are full.
    with open(path, "rb") as f:
        for _ in range(3):
            pickle.load(f)
        return _unpickle(f, lambda key, dtype, numel: pending[key][2], path)


def _unpickle(f, load_storage, path):
    try:
        return _RestrictedUnpickler(f, load_storage).load()
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path}: cannot unpickle the checkpoint ({type(e).__name__}: {e})") from None


def _as_state_dict(obj, path):
    for wrapper in ("state_dict", "model", "params"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(f"{path}: the checkpoint is not a state dict of tensors")
    return collections.OrderedDict((str(k), v) for k, v in obj.items())


# ---- writing (tests, and exporting Keras-trained weights back to PyTorch) ----

class _Global:
    """A reference to a PyTorch global, written by name (PyTorch need not be installed)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle requires a reduce callable to be callable
        raise TypeError("placeholder")


class _Writer(pickle._Pickler):  # the pure-Python pickler lets save() be overridden
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)



def save_state_dict(path, state_dict, legacy=False):
    """Writes ``{key: numpy array}`` as a PyTorch checkpoint that ``torch.load`` reads.

    Args:
        path: output ``.pth`` file.
        state_dict: ordered mapping of names to numpy arrays (float32/16/64, int, bool).
        legacy: write the pre-1.6 legacy format instead of the zip archive.
    """
    arrays = collections.OrderedDict((k, np.array(v, order="C")) for k, v in state_dict.items())
    storages = {}  # storage key -> (dtype name, array)

    class Pickler(_Writer):
        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):
                storages[obj.key] = obj.array
                return ("storage", _Global("torch", _DTYPE_STORAGES[obj.array.dtype]), obj.key, "cpu", obj.array.size)
            return None

    tensors = collections.OrderedDict()
    for i, (name, array) in enumerate(arrays.items()):
        if array.dtype not in _DTYPE_STORAGES:
            raise ValueError(f"{name}: dtype {array.dtype} has no PyTorch storage type")
        tensors[name] = _TensorRecord(_StorageRef(str(i), array))
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(tensors)
    if legacy:
        with open(path, "wb") as f:
            for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
                pickle.dump(header, f, protocol=2)
            f.write(buffer.getvalue())
            pickle.dump(list(storages), f, protocol=2)
            for key, array in storages.items():
                f.write(struct.pack("<q", array.size))
                f.write(array.astype(array.dtype.newbyteorder("<")).tobytes())
        return
    root = os.path.splitext(os.path.basename(path))[0] or "archive"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{root}/data.pkl", buffer.getvalue())
        for key, array in storages.items():
            archive.writestr(f"{root}/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
        archive.writestr(f"{root}/version", "3\n")


class _StorageRef:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _TensorRecord:
    def __init__(self, storage):
        self.storage = storage

    def __reduce__(self):
        shape = self.storage.array.shape
        strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (self.storage, 0, shape, strides, False, collections.OrderedDict()))
