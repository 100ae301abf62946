"""Keras -> TFLite conversion in float32, float16 (fp16 weights) and int8 (full integer).

Needs TensorFlow (runs on the training machine, not on the device). Models must have a fixed
input shape with batch 1 (``keras_dehaze.edge.quantization.rebuild_fixed``): a dynamic batch leaves
SHAPE/STRIDED_SLICE ops that the GPU delegate rejects.

The converter is fed a concrete function of ``model(x, training=False)`` rather than
``from_keras_model``: the latter first saves a SavedModel, and for QAT models that path fails
with a misleading "Could not find SavedModel .pb" error.

Usage::

    blob = convert(model, "int8", representative=random_crops(paths, (256, 256), 64))
    ship_preset("lkdnet_s_mixed")   # the int8 file shipped beside a preset (edge/ship_preset.py)
"""

import os

import numpy as np

from keras_dehaze.atomic import atomic_write
from keras_dehaze.backend import tf
from keras_dehaze.edge.gpu_rewrite import unfuse_transpose_conv_activation

MODES = ("float32", "float16", "int8", "int8_dynamic")


def _converter(model):
    spec = tf.TensorSpec(model.inputs[0].shape, tf.float32, name="hazy")
    if any(d is None for d in spec.shape):
        raise ValueError(f"{model.name}: input shape {tuple(spec.shape)} is not fixed; rebuild it with "
                         "keras_dehaze.edge.quantization.rebuild_fixed(model, H, W) first")

    @tf.function
    def inference(x):
        return model(x, training=False)

    concrete = inference.get_concrete_function(spec)
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)


def convert(model, mode, representative=None, int8_io=True, gpu_rewrite=True):
    """Converts a fixed-shape Keras model to a ``.tflite`` flatbuffer (bytes).

    Args:
        model: a Keras model with a fixed input shape (float or QAT).
        mode: "float32"; "float16" (weights stored in fp16, dequantized at load or run by a
            GPU delegate in fp16); "int8" (full integer: ``TFLITE_BUILTINS_INT8``);
            "int8_dynamic" (dynamic-range quantization: int8 weights, activations quantized
            per inference from their actual range; no calibration set. Networks with
            image-wide normalisation such as LKD-Net keep their accuracy this way where
            full-integer calibration does not).
        representative: for "int8": a callable returning an iterable of ``[array]`` inputs
            (the converter's representative dataset); required (also for QAT models, whose
            tensors without a FakeQuant range are calibrated from it).
        int8_io: for "int8": int8 input and output tensors (True) or float32 I/O with
            QUANTIZE/DEQUANTIZE at the ends (False).
        gpu_rewrite: for float modes, split ReLUs the converter fused into TRANSPOSE_CONV
            (op version 4, rejected by the GPU delegate) back into a separate RELU
            (``keras_dehaze.edge.gpu_rewrite.unfuse_transpose_conv_activation``; exact).

    Returns:
        bytes of the flatbuffer.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    conv = _converter(model)
    # Builtin ops only: anything needing SELECT_TF_OPS must fail here, not on the device.
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode == "int8_dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if representative is None:
            raise ValueError("int8 conversion needs a representative dataset of real images")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    blob = conv.convert()
    if not blob:  # the converter sometimes fails by returning an empty buffer
        raise RuntimeError(f"TFLite conversion of {model.name} to {mode} returned an empty model")
    blob = bytes(blob)
    if gpu_rewrite and mode in ("float32", "float16"):
        blob, _ = unfuse_transpose_conv_activation(blob)
    return blob


def random_crops(paths, size, count, seed=0, read=None):
    """A representative dataset: ``count`` random ``size`` (H, W) crops of real images.

    Images smaller than the crop are resized up first (keeping them in the set). Cycles over
    ``paths`` in a seeded random order, one random window per visit.

    Returns:
        A callable yielding ``[float32 array [1, H, W, 3]]`` (the converter's format).
    """
    if not paths:
        raise ValueError("random_crops: no images")
    if read is None:
        from keras_dehaze.data import read_image as read
    h, w = size

    def generate():
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(paths))
        for i in range(count):
            image = fit_at_least(read(paths[order[i % len(paths)]]), h, w)
            y = rng.integers(0, image.shape[0] - h + 1)
            x = rng.integers(0, image.shape[1] - w + 1)
            yield [image[None, y : y + h, x : x + w].astype(np.float32)]

    return generate


def fit_at_least(image, h, w):
    """Resizes an image up (keeping its aspect ratio) only if it is smaller than h x w."""
    scale = max(h / image.shape[0], w / image.shape[1])
    if scale <= 1:
        return image
    import cv2

    size = (max(w, round(image.shape[1] * scale)), max(h, round(image.shape[0] * scale)))
    return np.clip(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def center_crop(image, h, w):
    """The central h x w window (after ``fit_at_least``); used for parity and evaluation."""
    image = fit_at_least(image, h, w)
    y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return image[y : y + h, x : x + w]


# What a preset's shipped int8 file is, by conversion mode (recorded as ``int8_kind``).
SHIPPED_INT8_KINDS = {"int8_dynamic": "int8 weights, dynamic-range int8 activations (no calibration)",
                      "int8": "full integer int8 (calibrated)"}


def ship_preset(name, mode="int8_dynamic", size=256, calib=(), note=""):
    """Converts a preset to the int8 ``.tflite`` shipped beside it (maintainers).

    Writes ``keras_dehaze/weights/<name>_int8.tflite`` and records it in ``<name>.json``
    (``int8_tflite``, ``int8_kind``, ``int8_size``, and ``int8_note`` if given). LKD-Net is
    exported with its BatchNorm folded. The graph is converted at ``size`` x ``size`` (a multiple
    of 4: no pad or crop ops), so LiteRT can resize its input to any other multiple of 4.

    Args:
        name: a preset name or alias.
        mode: a key of ``SHIPPED_INT8_KINDS``; "int8" (full integer) needs ``calib`` images.
        size: conversion size.
        calib: image paths for full-integer calibration.
        note: recorded with the file (e.g. the measured int8-vs-float gap).

    Returns:
        (path of the written file, its size in bytes).
    """
    from keras_dehaze import pretrained
    from keras_dehaze.edge.quantization import rebuild_fixed
    from keras_dehaze.models.lkdnet import fold_batchnorm

    if mode not in SHIPPED_INT8_KINDS:
        raise ValueError(f"mode must be one of {sorted(SHIPPED_INT8_KINDS)}, got {mode!r}")
    model = pretrained.load_pretrained(name)
    meta = pretrained.metadata(name)
    if meta["model"] == "lkdnet":
        fixed = fold_batchnorm(model, input_shape=(size, size, 3), batch_size=1)
    else:
        fixed = rebuild_fixed(model, size, size)
    representative = random_crops(list(calib), (size, size), 32) if mode == "int8" else None
    blob = convert(fixed, mode, representative=representative, int8_io=False)
    name = pretrained.resolve(name)
    out = os.path.join(pretrained.WEIGHTS_DIR, f"{name}_int8.tflite")
    atomic_write(out, blob)
    extra = {"int8_note": note} if note else {}
    pretrained.update_metadata(name, int8_tflite=os.path.basename(out), int8_kind=SHIPPED_INT8_KINDS[mode],
                               int8_size=[size, size], **extra)
    return out, len(blob)


__all__ = ["MODES", "SHIPPED_INT8_KINDS", "center_crop", "convert", "fit_at_least", "random_crops", "ship_preset"]
