import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def data_dir():
    """Benchmark datasets (SOTS, Dense-Haze, ...): $KERAS_DEHAZE_DATA, else ./data in the repo
    (a link the README suggests). Tests that need them skip when absent."""
    return os.environ.get("KERAS_DEHAZE_DATA") or os.path.join(REPO, "data")


@pytest.fixture(scope="session")
def lkd_weights_dir():
    """Official LKD-Net checkpoints ({ITS,OTS}/LKD-{t,s}.pth): $KERAS_DEHAZE_LKD_WEIGHTS."""
    return os.environ.get("KERAS_DEHAZE_LKD_WEIGHTS", os.path.join(REPO, "lkd-net-weights"))


def shared_path(*parts, env=None):
    """Path of a file of the shared real data/weights folder, or None when it is absent.

    Looked up as ``$<env>`` (a file-specific variable, e.g. KERAS_DEHAZE_SQUEEZENET) if given,
    else ``$KERAS_DEHAZE_SHARED/<parts>`` (a folder of data/ and weights/; unset: none).
    Tests that need it skip when None: the suite must pass on a fresh clone without it.
    """
    if env and os.environ.get(env):
        path = os.environ[env]
    elif os.environ.get("KERAS_DEHAZE_SHARED"):
        path = os.path.join(os.environ["KERAS_DEHAZE_SHARED"], *parts)
    else:
        return None
    return path if os.path.exists(path) else None
