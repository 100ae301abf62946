import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def shared_path(*parts, env=None):
    """Path of a file of the shared real data/weights folder, or None when it is absent.

    Looked up as ``$<env>`` (a file-specific variable, e.g. KERAS_DEHAZE_SQUEEZENET) if given,
    else ``$KERAS_DEHAZE_SHARED/<parts>`` (default root /work/shared, the development machine).
    Tests that need it skip when None: the suite must pass on a fresh clone without it.
    """
    if env and os.environ.get(env):
        path = os.environ[env]
    else:
        path = os.path.join(os.environ.get("KERAS_DEHAZE_SHARED", "/work/shared"), *parts)
    return path if os.path.exists(path) else None
