"""The PyTorch checkpoint reader/writer, without PyTorch."""

import io
import pickle
import zipfile

import numpy as np
import pytest

from keras_dehaze.zoo.torch_checkpoint import CheckpointError, load_state_dict, save_state_dict


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "module.conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "module.conv.bias": rng.normal(size=4).astype(np.float32),
        "module.half": rng.normal(size=(2, 5)).astype(np.float16),
        "module.bn.num_batches_tracked": np.array(12, np.int64),
        "module.double": rng.normal(size=(3,)),
    }


@pytest.mark.parametrize("legacy", [False, True])
def test_round_trip_keeps_names_order_values_and_dtypes(tmp_path, legacy):
    arrays = _arrays()
    path = tmp_path / "model.pth"
    save_state_dict(path, arrays, legacy=legacy)
    assert zipfile.is_zipfile(path) == (not legacy)
    loaded = load_state_dict(path)
    assert list(loaded) == list(arrays)
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape
        np.testing.assert_array_equal(loaded[key], value)


def _hand_pickle(global_module="torch._utils", global_name="_rebuild_tensor_v2"):
    """data.pkl of {"t": a 2x3 view with strides (1, 2), i.e. the transpose of a 3x2 storage},
    assembled opcode by opcode as torch.save writes it (independent of our writer)."""
    p = pickle
    out = io.BytesIO()
    w = out.write
    w(p.PROTO + bytes([2]))
    w(p.GLOBAL + b"collections\nOrderedDict\n" + p.EMPTY_TUPLE + p.REDUCE)
    w(p.MARK + p.BINUNICODE + (1).to_bytes(4, "little") + b"t")
    w(p.GLOBAL + f"{global_module}\n{global_name}\n".encode())
    w(p.MARK)  # args of the rebuild call
    w(p.MARK + p.BINUNICODE + (7).to_bytes(4, "little") + b"storage")
    w(p.GLOBAL + b"torch\nFloatStorage\n")
    w(p.BINUNICODE + (1).to_bytes(4, "little") + b"0")
    w(p.BINUNICODE + (3).to_bytes(4, "little") + b"cpu")
    w(p.BININT1 + bytes([6]) + p.TUPLE + p.BINPERSID)
    w(p.BININT1 + bytes([0]))  # storage offset
    w(p.BININT1 + bytes([2]) + p.BININT1 + bytes([3]) + p.TUPLE2)  # size
    w(p.BININT1 + bytes([1]) + p.BININT1 + bytes([2]) + p.TUPLE2)  # stride
    w(p.NEWFALSE + p.GLOBAL + b"collections\nOrderedDict\n" + p.EMPTY_TUPLE + p.REDUCE)
    w(p.TUPLE + p.REDUCE + p.SETITEMS + p.STOP)
    return out.getvalue()


def _hand_zip(path, pkl, storage):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", storage.astype("<f4").tobytes())
        z.writestr("archive/version", "3\n")


def test_reads_a_hand_assembled_checkpoint_with_strided_tensor(tmp_path):
    storage = np.arange(6, dtype=np.float32)  # as a 3x2 matrix [[0, 1], [2, 3], [4, 5]]
    _hand_zip(tmp_path / "t.pth", _hand_pickle(), storage)
    loaded = load_state_dict(tmp_path / "t.pth")
    np.testing.assert_array_equal(loaded["t"], storage.reshape(3, 2).T)


def test_refuses_any_other_global(tmp_path):
    _hand_zip(tmp_path / "evil.pth", _hand_pickle("os", "system"), np.zeros(6, np.float32))
    with pytest.raises(CheckpointError, match="refused global os.system"):
        load_state_dict(tmp_path / "evil.pth")


def test_clear_errors_for_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_state_dict(tmp_path / "nope.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_state_dict(tmp_path / "text.pth")
    _hand_zip(tmp_path / "short.pth", _hand_pickle(), np.zeros(2, np.float32))
    with pytest.raises(CheckpointError, match="truncated"):
        load_state_dict(tmp_path / "short.pth")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "not a model")
    with pytest.raises(CheckpointError, match="data.pkl"):
        load_state_dict(tmp_path / "other.zip")


def test_unwraps_a_training_checkpoint(tmp_path):
    arrays = _arrays()
    path = tmp_path / "wrapped.pth"
    save_state_dict(path, arrays)
    # a {"state_dict": ...} wrapper is what many training scripts save
    with zipfile.ZipFile(path) as z:
        pkl = z.read("wrapped/data.pkl")
    head = pickle.PROTO + bytes([2]) + pickle.EMPTY_DICT + pickle.BINUNICODE + (10).to_bytes(4, "little") + b"state_dict"
    body = pkl[2:-1]  # the ordered dict, without PROTO and STOP
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(tmp_path / "w2.pth", "w") as out:
        for name in z.namelist():
            out.writestr(name, head + body + pickle.SETITEM + pickle.STOP if name.endswith("data.pkl") else z.read(name))
    loaded = load_state_dict(tmp_path / "w2.pth")
    np.testing.assert_array_equal(loaded["module.conv.weight"], arrays["module.conv.weight"])
