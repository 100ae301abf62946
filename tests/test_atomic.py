"""keras_dehaze.atomic: a write either replaces the file completely or leaves it untouched."""

import os

import pytest

from keras_dehaze.atomic import atomic_open, atomic_path, atomic_write, temporary_path


def test_write_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "a.json"
    atomic_write(path, "first")
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["a.json"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path, error):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(error):
        with atomic_open(path, "w") as f:
            f.write("half of the new")
            raise error
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_fixed_temporary_name_overwrites_a_leftover(tmp_path):
    """A fixed name (e.g. a saver that needs the .keras extension): a killed run's leftover is
    overwritten by the next write, not an error."""
    path, tmp = tmp_path / "best.keras", tmp_path / "best.keras.tmp.keras"
    tmp.write_bytes(b"half a file")
    with atomic_path(path, tmp=tmp) as t:
        assert t == str(tmp)
        with open(t, "wb") as f:
            f.write(b"complete")
    assert path.read_bytes() == b"complete" and not tmp.exists()
    atomic_write(path, b"again", tmp=tmp)
    assert path.read_bytes() == b"again" and not tmp.exists()


def test_temporary_name_is_hidden_beside_the_target(tmp_path):
    tmp = temporary_path(tmp_path / "x.png")
    assert os.path.dirname(tmp) == str(tmp_path)
    assert os.path.basename(tmp).startswith(".x.png.") and tmp.endswith(".tmp")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a", b"x")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "a").st_mode & 0o777) == 0o644


def test_fsync_and_modes(tmp_path):
    atomic_write(tmp_path / "a", "text é", fsync=True)
    assert (tmp_path / "a").read_text(encoding="utf-8") == "text é"
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "b", "a"):
            pass
