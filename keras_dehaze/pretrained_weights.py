"""Starting a network from pretrained weights: a preset or a saved checkpoint of the same
architecture (``model.pretrained`` of a training config), and frozen copies of a network (the
teacher of mean-teacher training).

Used by the experiment (``model.pretrained``), the trainers (``clone_dehazer``) and the
``train`` command (``PretrainedWeightsError`` is one of its clear, exit-2 errors).
"""

import os

from keras_dehaze import pretrained
from keras_dehaze.backend import keras


class PretrainedWeightsError(ValueError):
    """A pretrained checkpoint is missing, unreadable or of another architecture."""


def clone_dehazer(dehazer, name=None):
    """A separate, non-trainable copy of ``dehazer`` with the same weights (e.g. a teacher)."""
    try:
        teacher = keras.models.clone_model(dehazer)
    except (ValueError, TypeError, NotImplementedError):  # subclassed models
        teacher = dehazer.__class__.from_config(dehazer.get_config())
        teacher.build(dehazer.input_shape)
    teacher.set_weights(dehazer.get_weights())
    teacher.trainable = False
    if name:
        teacher._name = name
    return teacher


def load_pretrained_weights(dehazer, path):
    """Copies the weights of a saved ``.keras``/``.h5`` dehazer, or of a network bundled with the
    package (its name, e.g. ``aecrnet_default``), into ``dehazer``.

    Raises:
        PretrainedWeightsError: the file is missing, cannot be loaded, or holds a network whose
            weights do not match ``dehazer`` one to one (another architecture or other args).
    """
    path = os.fspath(path)
    if not os.path.isfile(path) and pretrained.is_preset(path):
        source = pretrained.load_pretrained(path)
    else:
        source = _load_checkpoint(path)
    src, dst = source.weights, dehazer.weights
    problem = None
    if len(src) != len(dst):
        problem = f"{len(src)} weight tensors in the checkpoint, {len(dst)} in the configured model"
    else:
        for a, b in zip(src, dst):
            if a.shape != b.shape:
                problem = f"weight {a.name} has shape {a.shape} in the checkpoint, {b.name} {b.shape} in the model"
                break
    if problem is None:  # same weights, other layers: e.g. AE-CR-Net with and without global_residual
        differ = sorted(set(_layer_signature(source)) ^ set(_layer_signature(dehazer)))
        if differ:
            problem = "the layers differ: " + ", ".join(f"{cls} {name!r}" for cls, name in differ[:4])
    if problem:
        raise PretrainedWeightsError(
            f"{path} holds '{source.name}' ({source.count_params():,} parameters), which does not match the "
            f"configured model '{dehazer.name}' ({dehazer.count_params():,} parameters): {problem}. "
            "Set model.name / model.args to the checkpoint's architecture.")
    dehazer.set_weights(source.get_weights())
    return source


def _layer_signature(model):
    return [(type(layer).__name__, layer.name) for layer in model.layers]


def _load_checkpoint(path):
    if not os.path.isfile(path):
        raise PretrainedWeightsError(f"pretrained checkpoint not found: {path} (nor is it a bundled network: "
                                     f"{', '.join(pretrained.available()) or 'none'})")
    if not path.endswith((".keras", ".h5")):
        raise PretrainedWeightsError(f"{path}: expected a .keras (or .h5) file saved from a dehazer")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - any load failure gets the same clear message
        raise PretrainedWeightsError(f"cannot load pretrained checkpoint {path}: {type(e).__name__}: {e}") from e


__all__ = ["PretrainedWeightsError", "clone_dehazer", "load_pretrained_weights"]
