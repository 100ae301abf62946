"""Short quantization-aware fine-tuning of a float dehazer on a paired folder (L1 loss).

The float checkpoint stays the source of truth: the QAT model is rebuilt from it in code
(``keras_dehaze.edge.quantization``), its activation ranges are calibrated from real crops first
(tfmot's [-6, 6] initial ranges would otherwise dominate a short run), then trained for a few
hundred steps at a small learning rate so the weights adapt to int8 rounding.

Target (``target=``): "float" (default) distils the float model: the loss is L1 between the QAT
output and the float model's output on the same crop, so QAT only learns to undo the rounding
and cannot drift towards the fine-tuning set (GT targets on one small set moved the model away
from the float one: -1.27 dB on SOTS-outdoor after 100 steps on SOTS-indoor). "gt" uses the
ground truth of the pairs, i.e. continues the task training under quantization.

Usage::

    qat, losses = qat_finetune(float_model, pairs, steps=200, crop=64)
    qat.save_weights("qat.weights.h5")   # whole-model saving of QAT models fails with tfmot 0.8
"""

import itertools
import time

import numpy as np

from keras_dehaze.backend import keras, tf
from keras_dehaze.edge.quantization import calibrate_ranges, quantize_aware, rebuild_fixed, refresh_weight_ranges


def qat_finetune(model, pairs, steps, crop=64, batch_size=4, lr=1e-5, calib_batches=8, seed=0,
                 log=print, target="float", **overrides):
    """Builds the QAT version of ``model`` at ``crop`` x ``crop`` and fine-tunes it.

    Args:
        model: Functional float model (any input size).
        pairs: ``Pair`` objects or (hazy, clear) paths.
        steps: optimizer steps (0 = calibrate only).
        crop: square training crop; the QAT model is built at this size (any batch).
        batch_size, lr, seed: training settings (Adam, L1 loss).
        calib_batches: batches used to calibrate the activation ranges before training.
        log: progress printer (None for silence).
        target: "float" (distil the float model's output) or "gt" (the pairs' clear images).
        **overrides: layer-config overrides for ``rebuild_fixed`` (e.g. ``index_math="int"``).

    Returns:
        (qat_model, list of per-step L1 losses).
    """
    from keras_dehaze.data import paired_dataset

    if target not in ("float", "gt"):
        raise ValueError(f"target must be 'float' or 'gt', got {target!r}")

    qat = quantize_aware(rebuild_fixed(model, crop, crop, batch_size=None, **overrides))
    data = paired_dataset(pairs, batch_size, crop_size=crop, augment=True, shuffle=True, seed=seed,
                          repeat=True, drop_remainder=True)
    batches = iter(data)
    t0 = time.time()
    n = calibrate_ranges(qat, (hazy for hazy, _ in itertools.islice(batches, calib_batches)))
    if log:
        log(f"QAT: calibrated {n} activation ranges on {calib_batches} batches ({time.time() - t0:.1f} s)")

    optimizer = keras.optimizers.Adam(lr)

    @tf.function
    def train_step(hazy, clear):
        if target == "float":
            clear = tf.stop_gradient(model(hazy, training=False))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(qat(hazy, training=True) - clear))
        grads = tape.gradient(loss, qat.trainable_variables)
        optimizer.apply_gradients(zip(grads, qat.trainable_variables))
        return loss

    losses = []
    t0 = time.time()
    for step, (hazy, clear) in enumerate(itertools.islice(batches, steps), 1):
        losses.append(float(train_step(hazy, clear)))
        if log and (step == 1 or step % max(1, steps // 10) == 0 or step == steps):
            log(f"QAT step {step}/{steps}: L1 to {target} {losses[-1]:.4f} "
                f"(mean of last 10: {np.mean(losses[-10:]):.4f}; {time.time() - t0:.0f} s)")
    refresh_weight_ranges(qat)  # the last update moved the weights after their ranges were taken
    return qat, losses


def export_copy(qat, model, height, width, **overrides):
    """The trained QAT model rebuilt at a fixed batch-1 size for conversion (same weights)."""
    fixed = quantize_aware(rebuild_fixed(model, height, width, batch_size=1, **overrides))
    fixed.set_weights(qat.get_weights())
    return fixed


__all__ = ["export_copy", "qat_finetune"]
