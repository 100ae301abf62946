"""Shared checks for any layer or network (keras-hub's run_layer_test / run_litert_export_test idea).

``run_layer_test`` checks, by one call: output shape(s) and trainable-weight count; a config round
trip (``get_config`` -> ``from_config`` gives the same config and, with the same weights, the same
outputs; the registered name deserialises); a training step (every trainable weight gets a finite
gradient and an SGD step moves it); a ``.keras`` round trip of a model wrapping the layer (safe
mode); Keras-vs-TFLite parity of that model (builtin ops only, one conversion, the LiteRT
interpreter). Inputs should be tiny: the conversion dominates the cost (about 1 s per layer).

``run_model_saving_test`` saves a whole network as ``.keras`` and compares the reloaded outputs.
"""

import json
import os
import tempfile

import numpy as np

from keras_dehaze.backend import keras, tf


def _flat(x):
    return tf.nest.flatten(x)


def _numpy(x):
    return [np.asarray(t) for t in _flat(x)]


def _assert_close(got, want, atol, what):
    got, want = _numpy(got), _numpy(want)
    assert len(got) == len(want), f"{what}: {len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"{what}: output {i} has shape {g.shape}, expected {w.shape}"
        np.testing.assert_allclose(g, w, atol=atol, err_msg=f"{what}: output {i}")


def _shapes(outputs):
    shapes = [tuple(t.shape) for t in _flat(outputs)]
    return shapes[0] if len(shapes) == 1 else shapes


def run_layer_test(layer, inputs, expected_shape=None, expected_trainable_weights=None, atol=1e-5,
                   export=True, tflite_atol=1e-4):
    """Runs the shared checks on ``layer`` (built or not) with ``inputs`` (a tensor or a list).

    Args:
        expected_shape: the output shape, or a list of shapes for several outputs.
        expected_trainable_weights: the number of trainable weights.
        atol: tolerance of the config and ``.keras`` round trips.
        export: also run the ``.keras`` round trip and the TFLite parity. One call per layer class
            is enough: pass False for further configurations of the same layer.
        tflite_atol: tolerance of TFLite against Keras.

    Returns the layer's outputs on ``inputs``. The layer's own weights are not changed (the
    training step runs on a clone).
    """
    outputs = layer(inputs)
    if expected_shape is not None:
        expected = [tuple(s) for s in expected_shape] if isinstance(expected_shape, list) else tuple(expected_shape)
        assert _shapes(outputs) == expected, (_shapes(outputs), expected_shape)
    if expected_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_trainable_weights, [w.name for w in layer.trainable_weights]

    # Config round trip: the same config, and with the same weights the same outputs.
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True, default=str) == json.dumps(config, sort_keys=True, default=str)
    clone(inputs)
    clone.set_weights(layer.get_weights())
    _assert_close(clone(inputs), outputs, atol, "from_config")
    # ... and the registered name resolves (what loading a .keras file relies on).
    revived = keras.layers.deserialize(json.loads(json.dumps(keras.layers.serialize(layer), default=str)))
    assert type(revived) is type(layer)

    # A training step, on the clone: every trainable weight gets a finite gradient, and an SGD step
    # moves every weight whose update is not lost in float32 rounding.
    if clone.trainable_weights:
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_mean(tf.square(tf.cast(t, tf.float32))) for t in _flat(clone(inputs, training=True))])
        grads = tape.gradient(loss, clone.trainable_weights)
        missing = [w.name for w, g in zip(clone.trainable_weights, grads) if g is None]
        assert not missing, f"no gradient for {missing}"
        assert all(np.isfinite(g.numpy()).all() for g in grads), "non-finite gradient"
        before = [w.numpy().copy() for w in clone.trainable_weights]
        lr = 0.01
        keras.optimizers.SGD(lr).apply_gradients(zip(grads, clone.trainable_weights))
        stuck = [w.name for w, b, g in zip(clone.trainable_weights, before, grads)
                 if np.max(np.abs(lr * g.numpy())) > 1e-5 * max(1.0, np.max(np.abs(b))) and np.array_equal(w.numpy(), b)]
        assert not stuck, f"an SGD step did not move {stuck}"

    if export:
        model = _wrap(layer, inputs)
        with tempfile.TemporaryDirectory() as tmp:
            run_model_saving_test(model, inputs, tmp, atol=atol)
        run_tflite_parity_test(model, inputs, atol=tflite_atol)
    return outputs


def _wrap(layer, inputs):
    """A functional model around ``layer`` with the static (batch-free) shapes of ``inputs``."""
    flat = _flat(inputs)
    model_inputs = [keras.Input(tuple(x.shape[1:]), dtype=x.dtype) for x in flat]
    model_outputs = layer(model_inputs if isinstance(inputs, (list, tuple)) else model_inputs[0])
    return keras.Model(model_inputs, model_outputs, name=f"wrapped_{layer.name}")


def run_tflite_parity_test(model, inputs, atol=1e-4):
    """Converts ``model`` at the exact shapes of ``inputs`` (builtin ops only) and compares the
    LiteRT interpreter's outputs with Keras's (inference mode). Returns the flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    flat = _flat(inputs)
    specs = [tf.TensorSpec(x.shape, x.dtype, name=f"input_{i}") for i, x in enumerate(flat)]
    several = isinstance(inputs, (list, tuple))

    @tf.function(input_signature=specs)
    def serve(*xs):
        return {f"output_{i}": t for i, t in enumerate(_flat(model(list(xs) if several else xs[0], training=False)))}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    got = runner(**{f"input_{i}": np.asarray(x) for i, x in enumerate(flat)})
    want = _numpy(model(inputs, training=False))
    _assert_close([got[f"output_{i}"] for i in range(len(want))], want, atol, "TFLite vs Keras")
    return flatbuffer


def run_model_saving_test(model, inputs, tmp_path, atol=1e-5):
    """Saves as .keras, reloads in safe mode, and compares outputs."""
    path = os.path.join(str(tmp_path), f"{model.name}.keras")
    expected = model(inputs, training=False)
    model.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    _assert_close(restored(inputs, training=False), expected, atol, ".keras round trip")
    return restored
