"""Quiet TensorFlow for the command line tools (``keras-dehaze``, ``edge/convert.py``).

TensorFlow 2.21 prints its C++ notices (oneDNN, "Could not find cuda drivers", ``E0000 ...
failed call to cuInit ... (303)``) through absl *before* absl's log is initialised, and such
messages ignore ``TF_CPP_MIN_LOG_LEVEL``. So, unless verbose output was asked for:

* ``TF_CPP_MIN_LOG_LEVEL=3`` is set before TensorFlow is imported (later C++ logs),
* ``import_tensorflow()`` imports TensorFlow (and initialises its devices, which is where
  cuInit is called) with the process's stderr file descriptor captured; TensorFlow's notices
  (absl-formatted ``I0000 ...``/``W0000 ...``/``E0000 ...`` lines) are dropped and every other
  line (a real error, a Python warning) is passed on,
* ``filtered_stderr()`` does the same around loading a ``.tflite`` model ("INFO: Created
  TensorFlow Lite XNNPACK delegate for CPU."),
* TensorFlow's Python logger, absl's Python logging and TF/Keras warnings are set to errors only.

Nothing here imports TensorFlow at module import time: commands that do not need it (TFLite,
DCP, ``--help``) never load it.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

_VERBOSE = None  # None: configure() not called (library use: nothing is silenced)


def configure(verbose=False):
    """Call first thing in a command line tool, before anything imports TensorFlow."""
    global _VERBOSE
    _VERBOSE = bool(verbose)
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    for name in ("tensorflow", "absl", "h5py", "tf_keras"):
        logging.getLogger(name).setLevel(logging.ERROR)


def is_quiet():
    return _VERBOSE is False


def _silence_python():
    warnings.filterwarnings("ignore", module=r"(tensorflow|tf_keras|keras|absl|tensorflow_model_optimization)(\.|$)")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass


# absl C++ log lines ("I0000 00:00:1796669431.969812    4691 port.cc:153] ..."), the absl
# preamble, and the TFLite runtime's INFO lines.
_NOISE = re.compile(r"^([IWEF]\d{4} [\d:.]+ +\d+ [^ ]+:\d+\]|WARNING: All log messages before "
                    r"absl::InitializeLog\(\)|INFO: (Created TensorFlow Lite|Initialized TensorFlow Lite))")


@contextlib.contextmanager
def filtered_stderr():
    """Captures file descriptor 2 (C++ and Python writes alike) while the block runs, then writes
    back every line that is not a TensorFlow/TFLite log notice. Does nothing unless quiet."""
    if not is_quiet():
        yield
        return
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if line.strip() and not _NOISE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow():
    """Imports TensorFlow (through ``keras_dehaze.backend``) and returns ``(tf, keras)``.

    In quiet mode its import-time C++ notices and those of the device initialisation (cuInit)
    are dropped (``filtered_stderr``); a Python exception raised by the import propagates."""
    if not is_quiet() or "tensorflow" in sys.modules:
        from keras_dehaze.backend import keras, tf

        if is_quiet():
            _silence_python()
        return tf, keras
    with filtered_stderr():
        from keras_dehaze.backend import keras, tf

        tf.config.list_physical_devices()  # initialises the platforms (cuInit) while captured
    _silence_python()
    return tf, keras


__all__ = ["configure", "filtered_stderr", "import_tensorflow", "is_quiet"]
