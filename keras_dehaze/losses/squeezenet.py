"""ImageNet SqueezeNet v1.1 (no top) as an offline feature space for the contrastive loss.

The network is built in tf_keras with the layer names of DeepCognition/keras-squeezenet
(``conv1``, ``fire2/squeeze1x1``, ``fire2/expand1x1``, ``fire2/expand3x3``, ... ``fire9/...``) and
its weights are read from that project's Keras 1 HDF5 file
``squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5`` (MIT licence, 722,496 parameters) with
h5py, layer by layer BY NAME: every array of the file must land in the conv layer of the same
name with the same shape, and every conv layer of the network must receive its kernel and bias.
A file of another network (VGG, SqueezeNet v1.0, the include-top file with ``conv10``...) is
refused with a message that names the missing, unexpected or mis-shaped layers.

The weights file is not shipped with the package (it would need the upstream MIT licence beside
it). It is looked up, in this order, at:

1. the path given (``weights=...``; in experiment configs ``trainer.feature_weights``);
2. the environment variable ``KERAS_DEHAZE_SQUEEZENET`` (a path to the file);
3. the Keras cache: ``~/.keras/models/`` then ``/tmp/.keras/models/``
   (``squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5``).

Nothing is downloaded.

Input preprocessing is the one keras-squeezenet uses: ``keras.applications.imagenet_utils.
preprocess_input`` of Keras 1/2 in its default "caffe" mode, i.e. x * 255, RGB -> BGR, minus the
per-channel BGR means (103.939, 116.779, 123.68); `CaffePreprocess` does it inside the graph.

Architecture (Iandola et al. v1.1, as in keras-squeezenet; all pools 3x3 stride 2 "valid"):
conv1 3x3/2 64 "valid" + ReLU, pool1, fire2 (s16, e64+64), fire3, pool3, fire4 (s32, e128+128),
fire5, pool5, fire6 (s48, e192+192), fire7, fire8 (s64, e256+256), fire9. Each fire module is a
1x1 squeeze conv + ReLU feeding a 1x1 and a 3x3 ("same") expand conv, each + ReLU, concatenated
(1x1 first). Inputs must be at least 31 x 31 pixels (pool5 then has one row/column).

Taps and weights (in the spirit of the AE-CR-Net VGG19 taps relu1_1..relu5_1, weights 1/32,
1/16, 1/8, 1/4, 1, i.e. the first ReLU layer of each resolution stage, shallow to deep): the
first layer of each of SqueezeNet's four resolution stages, plus the first module of the widest
(512-channel) modules as the deepest tap:

    ==============  ========  ======  ========
    tap             channels  stride  weight
    ==============  ========  ======  ========
    relu_conv1      64        2       1/32
    fire2/concat    128       4       1/16
    fire4/concat    256       8       1/8
    fire6/concat    384       16      1/4
    fire8/concat    512       16      1
    ==============  ========  ======  ========

The weights are `PAPER_TAP_WEIGHTS` of `keras_dehaze.losses.contrastive` (the default), applied
to these five taps in order. (VGG19's relu1_1 is at stride 1; SqueezeNet has no stride-1 layer,
so its finest tap is at stride 2.)

Example:
    >>> g = squeezenet_imagenet("/data/squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5")  # doctest: +SKIP
    >>> [f.shape[-1] for f in g(tf.zeros([1, 64, 64, 3]))]  # doctest: +SKIP
    [64, 128, 256, 384, 512]

Reference:
    Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB
    model size", arXiv:1602.07360 (v1.1: github.com/forresti/SqueezeNet).
    DeepCognition/keras-squeezenet @ a73d4339 (squeezenet.py, the weights file; MIT).
"""

import os

import numpy as np

from keras_dehaze.backend import keras
from keras_dehaze.losses.feature_extractors import FeatureWeightsError, IMAGENET_CAFFE_MEAN_BGR, _wrap

SQUEEZENET_NOTOP_FILE = "squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5"
SQUEEZENET_ENV = "KERAS_DEHAZE_SQUEEZENET"
SQUEEZENET_SOURCE = "DeepCognition/keras-squeezenet (MIT), file " + SQUEEZENET_NOTOP_FILE
SQUEEZENET_PARAMS = 722_496

# (fire id, squeeze filters, expand filters per branch), SqueezeNet v1.1.
FIRE_MODULES = ((2, 16, 64), (3, 16, 64), (4, 32, 128), (5, 32, 128),
                (6, 48, 192), (7, 48, 192), (8, 64, 256), (9, 64, 256))
POOL_AFTER = {3: "pool3", 5: "pool5"}  # pool1 follows conv1

SQUEEZENET_TAP_LAYERS = ("relu_conv1", "fire2/concat", "fire4/concat", "fire6/concat", "fire8/concat")
SQUEEZENET_TAP_CHANNELS = (64, 128, 256, 384, 512)


def squeezenet_conv_shapes():
    """{conv layer name: (kernel shape, bias shape)} of SqueezeNet v1.1 no-top, RGB input.

    Example:
        >>> squeezenet_conv_shapes()["fire2/expand3x3"]
        ((3, 3, 16, 64), (64,))
    """
    shapes = {"conv1": ((3, 3, 3, 64), (64,))}
    channels = 64
    for fire, squeeze, expand in FIRE_MODULES:
        shapes[f"fire{fire}/squeeze1x1"] = ((1, 1, channels, squeeze), (squeeze,))
        shapes[f"fire{fire}/expand1x1"] = ((1, 1, squeeze, expand), (expand,))
        shapes[f"fire{fire}/expand3x3"] = ((3, 3, squeeze, expand), (expand,))
        channels = 2 * expand
    return shapes


def _how_to_give_file():
    return (
        f"Give the path of {SQUEEZENET_NOTOP_FILE} ({SQUEEZENET_SOURCE}) as weights=<path> "
        f"(config: trainer.feature_weights), or set the environment "
        f"variable {SQUEEZENET_ENV}=<path>, or copy it to ~/.keras/models/{SQUEEZENET_NOTOP_FILE}."
    )


def _default_candidates():
    return [
        os.path.join(os.path.expanduser("~"), ".keras", "models", SQUEEZENET_NOTOP_FILE),
        os.path.join("/tmp", ".keras", "models", SQUEEZENET_NOTOP_FILE),
    ]


def resolve_squeezenet_weights(weights=None):
    """Returns the path of the SqueezeNet v1.1 no-top weights file (nothing is downloaded).

    Args:
        weights: a path; None (or "imagenet") looks at ``$KERAS_DEHAZE_SQUEEZENET``, then
            ``~/.keras/models/`` and ``/tmp/.keras/models/``.

    Raises:
        FeatureWeightsError: the file is not found; the message says where it was looked for
            and how to give it.

    Example:
        >>> resolve_squeezenet_weights("/data/squeezenet_notop.h5")  # doctest: +SKIP
    """
    if weights not in (None, "", "imagenet"):
        path = os.path.expanduser(str(weights))
        if not os.path.isfile(path):
            raise FeatureWeightsError(f"SqueezeNet weights file not found: {path!r}. " + _how_to_give_file())
        return path
    env = os.environ.get(SQUEEZENET_ENV, "")
    if env:
        path = os.path.expanduser(env)
        if not os.path.isfile(path):
            raise FeatureWeightsError(
                f"{SQUEEZENET_ENV}={env!r} does not name an existing file. " + _how_to_give_file()
            )
        return path
    candidates = _default_candidates()
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FeatureWeightsError(
        f"The ImageNet SqueezeNet v1.1 weights (features 'imagenet_squeezenet') are missing: no path "
        f"given, {SQUEEZENET_ENV} not set, and not in {candidates}. " + _how_to_give_file()
    )


def _decode(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_keras_h5_weights(path):
    """Reads a Keras 1/2 weights HDF5 (``save_weights`` layout) into {layer: {weight: array}}.

    The layout: the root (or a ``model_weights`` group, for whole-model files) has the attribute
    ``layer_names``; the group of each layer has ``weight_names``, the dataset paths of its
    arrays inside that group (Keras 1 names such as ``uniform3`` and ``fire2/expand1x1_b``).
    Layers without weights are left out.

    Raises:
        FeatureWeightsError: not an HDF5 file, or not in the Keras weights layout.

    Example:
        >>> stored = read_keras_h5_weights(resolve_squeezenet_weights())  # doctest: +SKIP
        >>> {k: v.shape for k, v in stored["conv1"].items()}  # doctest: +SKIP
        {'uniform1': (3, 3, 3, 64), 'conv1_b': (64,)}
    """
    import h5py  # only the file readers need it

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise FeatureWeightsError(f"{path!r} is not a readable HDF5 file ({err}). " + _how_to_give_file()) from err
    with f:
        root = f["model_weights"] if "model_weights" in f and "layer_names" not in f.attrs else f
        if "layer_names" not in root.attrs:
            raise FeatureWeightsError(
                f"{path!r} is an HDF5 file but not a Keras weights file (no 'layer_names' attribute); "
                f"expected {SQUEEZENET_NOTOP_FILE} ({SQUEEZENET_SOURCE})."
            )
        stored = {}
        for layer in (_decode(n) for n in root.attrs["layer_names"]):
            if layer not in root:
                raise FeatureWeightsError(f"{path!r}: layer {layer!r} is listed but has no group")
            group = root[layer]
            names = [_decode(n) for n in group.attrs.get("weight_names", [])]
            if names:
                stored[layer] = {name: np.asarray(group[name][()]) for name in names}
    return stored


def _split_kernel_bias(layer, arrays, path):
    """(kernel, bias) of a conv layer's stored arrays, told apart by rank (4 vs 1)."""
    kernels = [a for a in arrays.values() if a.ndim == 4]
    biases = [a for a in arrays.values() if a.ndim == 1]
    if len(arrays) != 2 or len(kernels) != 1 or len(biases) != 1:
        shapes = {k: v.shape for k, v in arrays.items()}
        raise FeatureWeightsError(f"{path!r}: layer {layer!r} should hold one 4-D kernel and one bias, got {shapes}")
    return kernels[0], biases[0]


def assign_squeezenet_weights(model, stored, path="<weights>"):
    """Sets every conv layer of `model` from `stored` by layer name, checking names and shapes.

    Every array of `stored` must be used, and every conv layer of `model` must be set.

    Args:
        model: a network built by `squeezenet_backbone`.
        stored: {layer name: {weight name: array}} from `read_keras_h5_weights`.
        path: the file name, for messages.

    Raises:
        FeatureWeightsError: missing layers, layers the network lacks, or shape mismatches
            (all of them listed), i.e. the file is not SqueezeNet v1.1 no-top.

    Example:
        >>> assign_squeezenet_weights(squeezenet_backbone(), read_keras_h5_weights(p), p)  # doctest: +SKIP
    """
    convs = {layer.name: layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}
    missing = [name for name in convs if name not in stored]
    unexpected = [name for name in stored if name not in convs]
    mismatched, pending = [], []
    for name, layer in convs.items():
        if name not in stored:
            continue
        kernel, bias = _split_kernel_bias(name, stored[name], path)
        want = (tuple(layer.kernel.shape), tuple(layer.bias.shape))
        if (kernel.shape, bias.shape) != want:
            mismatched.append(f"{name}: file {kernel.shape}/{bias.shape}, network {want}")
        else:
            pending.append((layer, kernel, bias))
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"layers missing in the file: {', '.join(missing[:6])}"
                            + (f" (+{len(missing) - 6} more)" if len(missing) > 6 else ""))
        if unexpected:
            hint = " (the include-top file? use the no-top one)" if "conv10" in unexpected else ""
            problems.append(f"layers the no-top SqueezeNet v1.1 lacks: {', '.join(unexpected[:6])}"
                            + (f" (+{len(unexpected) - 6} more)" if len(unexpected) > 6 else "") + hint)
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(mismatched[:6]))
        raise FeatureWeightsError(
            f"{path!r} does not hold the weights of SqueezeNet v1.1 (no top, keras-squeezenet layer "
            f"names): " + " | ".join(problems) + ". " + _how_to_give_file()
        )
    for layer, kernel, bias in pending:
        layer.set_weights([kernel, bias])
    return model


def squeezenet_backbone(name="squeezenet_v11_notop"):
    """SqueezeNet v1.1 without classifier, random weights, keras-squeezenet layer names.

    Input: caffe-preprocessed BGR [B, H, W, 3] (H, W >= 31). Output: fire9/concat (512 ch).

    Example:
        >>> squeezenet_backbone().count_params()
        722496
    """
    inputs = keras.Input((None, None, 3), name="caffe_bgr")
    x = keras.layers.Conv2D(64, 3, strides=2, padding="valid", name="conv1")(inputs)
    x = keras.layers.Activation("relu", name="relu_conv1")(x)
    x = keras.layers.MaxPooling2D(3, 2, padding="valid", name="pool1")(x)
    for fire, squeeze, expand in FIRE_MODULES:
        prefix = f"fire{fire}/"
        s = keras.layers.Conv2D(squeeze, 1, padding="valid", name=prefix + "squeeze1x1")(x)
        s = keras.layers.Activation("relu", name=prefix + "relu_squeeze1x1")(s)
        left = keras.layers.Conv2D(expand, 1, padding="valid", name=prefix + "expand1x1")(s)
        left = keras.layers.Activation("relu", name=prefix + "relu_expand1x1")(left)
        right = keras.layers.Conv2D(expand, 3, padding="same", name=prefix + "expand3x3")(s)
        right = keras.layers.Activation("relu", name=prefix + "relu_expand3x3")(right)
        x = keras.layers.Concatenate(axis=-1, name=prefix + "concat")([left, right])
        if fire in POOL_AFTER:
            x = keras.layers.MaxPooling2D(3, 2, padding="valid", name=POOL_AFTER[fire])(x)
    return keras.Model(inputs, x, name=name)


def squeezenet_imagenet(weights=None):
    """Frozen ImageNet SqueezeNet v1.1 returning the five CR taps for [0, 1] RGB input.

    Args:
        weights: path of the no-top weights file; None: ``$KERAS_DEHAZE_SQUEEZENET`` or the
            Keras cache (see `resolve_squeezenet_weights`).

    Returns:
        A frozen tf_keras Model, [B, H, W, 3] in [0, 1] (H, W >= 31) -> list of 5 feature maps
        relu_conv1, fire2/concat, fire4/concat, fire6/concat, fire8/concat (64, 128, 256, 384,
        512 channels at strides 2, 4, 8, 16, 16).

    Raises:
        FeatureWeightsError: file missing, unreadable or of another network.

    Example:
        >>> g = squeezenet_imagenet("/data/" + SQUEEZENET_NOTOP_FILE)  # doctest: +SKIP
    """
    path = resolve_squeezenet_weights(weights)
    backbone = squeezenet_backbone()
    assign_squeezenet_weights(backbone, read_keras_h5_weights(path), path)
    taps = keras.Model(backbone.input, [backbone.get_layer(n).output for n in SQUEEZENET_TAP_LAYERS],
                       name="squeezenet_taps")
    return _wrap(taps, IMAGENET_CAFFE_MEAN_BGR, name="imagenet_squeezenet_features")


__all__ = [
    "SQUEEZENET_ENV",
    "SQUEEZENET_NOTOP_FILE",
    "SQUEEZENET_TAP_CHANNELS",
    "SQUEEZENET_TAP_LAYERS",
    "assign_squeezenet_weights",
    "read_keras_h5_weights",
    "resolve_squeezenet_weights",
    "squeezenet_backbone",
    "squeezenet_conv_shapes",
    "squeezenet_imagenet",
]
