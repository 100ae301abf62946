"""Official LKD-Net checkpoints <-> ``keras_dehaze.models.LKDNet`` weights, key by key.

Every checkpoint key maps to one Keras weight by name (``module.layer1.blocks.0.DWConv.weight``
-> layer ``layer1_blocks_0_DWConv``, kernel), with layout changes:
- conv kernels OIHW -> HWIO, depthwise kernels (C, 1, kh, kw) -> (kh, kw, C, 1);
- BatchNorm weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance
  (``num_batches_tracked`` is a training counter and is skipped);
- the convs before PixelShuffle get their output channels permuted from PyTorch's order
  (``c * r * r + i * r + j``) to ``tf.nn.depth_to_space``'s (``(i * r + j) * C + c``);
- SKFusion's 2C-channel logits conv and the 4-channel output conv are split in two (see the
  model's module docstring); LayerNorm (1, C, 1, 1) and scaler (C, 1, 1) parameters flatten.

Unknown, missing or mis-shaped keys are errors that list every offending name.
"""

import collections

import numpy as np

from keras_dehaze.backend import keras

_PROTECTED = ("patch_embed", "patch_merge1", "patch_merge2", "patch_split1", "patch_split2", "patch_unembed")
_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_SKIPPED = ("num_batches_tracked",)
PREFIX = "module."  # saved from DataParallel


class WeightConversionError(ValueError):
    """The checkpoint does not match the network: lists unknown, missing and mis-shaped keys."""


def torch_prefix(layer_name):
    """``layer1_blocks_0_cemlp_mlp_mlp_0`` -> ``layer1.blocks.0.cemlp.mlp.mlp.0``."""
    name = layer_name
    for i, token in enumerate(_PROTECTED):
        name = name.replace(token, f"\0{i}\0")
    name = name.replace("_", ".")
    for i, token in enumerate(_PROTECTED):
        name = name.replace(f"\0{i}\0", token)
    return name


def _pixel_shuffle_order(channels, r=2):
    """Index into PyTorch's channel order for each TensorFlow depth_to_space channel."""
    out = channels // (r * r)
    return np.array([c * r * r + i * r + j for i in range(r) for j in range(r) for c in range(out)])


def _conv(w):
    return np.transpose(w, (2, 3, 1, 0))


def _dwconv(w):
    return np.transpose(w, (2, 3, 0, 1))


class _Entry(collections.namedtuple("_Entry", "key variable to_keras to_torch")):
    """One checkpoint key and the Keras variable it fills (with the layout maps both ways)."""


def _entries(model):
    """All (checkpoint key -> Keras variable) entries of an LKDNet model, checkpoint order aside."""
    entries, merged = [], collections.defaultdict(list)  # merged: one key split over layers
    for layer in model.layers:
        if not layer.weights:
            continue
        name, prefix = layer.name, torch_prefix(layer.name)
        cls = type(layer).__name__
        if name.endswith(("_mlp_2_x", "_mlp_2_skip")):  # SKFusion logits: halves of one conv
            merged[prefix.rsplit(".", 1)[0] + ".weight"].append((layer.kernel, name.endswith("_skip")))
        elif name in ("patch_unembed_k", "patch_unembed_b"):  # K (1 channel) and B (3 channels)
            merged["patch_unembed.proj.0.weight"].append((layer.kernel, name.endswith("_b")))
            merged["patch_unembed.proj.0.bias"].append((layer.bias, name.endswith("_b")))
        elif cls == "BatchNormalization":
            for torch_name, attr in _BN.items():
                entries.append(_Entry(f"{prefix}.{torch_name}", getattr(layer, attr), None, None))
        elif cls == "DepthwiseConv2D":
            entries.append(_Entry(f"{prefix}.weight", layer.depthwise_kernel, _dwconv, lambda k: np.transpose(k, (2, 3, 0, 1))))
            entries.append(_Entry(f"{prefix}.bias", layer.bias, None, None))
        elif cls == "Conv2D":
            to_k, to_t = _conv, lambda k: np.transpose(k, (3, 2, 0, 1))
            if name.startswith("patch_split"):
                order = _pixel_shuffle_order(layer.filters)
                inverse = np.argsort(order)
                to_k = lambda w, o=order: _conv(w)[..., o]  # noqa: E731
                to_t = lambda k, i=inverse: np.transpose(k[..., i], (3, 2, 0, 1))  # noqa: E731
                entries.append(_Entry(f"{prefix}.bias", layer.bias, lambda b, o=order: b[o], lambda b, i=inverse: b[i]))
            elif layer.use_bias:
                entries.append(_Entry(f"{prefix}.bias", layer.bias, None, None))
            entries.append(_Entry(f"{prefix}.weight", layer.kernel, to_k, to_t))
        elif cls == "ImageLayerNorm":
            flat = lambda w: w.reshape(-1)  # noqa: E731
            back = lambda w: w.reshape(1, -1, 1, 1)  # noqa: E731
            entries.append(_Entry(f"{prefix}.weight", layer.weight, flat, back))
            entries.append(_Entry(f"{prefix}.bias", layer.bias, flat, back))
        elif cls == "ChannelScale":
            entries.append(_Entry(prefix, layer.scale, lambda w: w.reshape(-1), lambda w: w.reshape(-1, 1, 1)))
        else:
            raise WeightConversionError(f"layer {name!r} ({cls}) has weights but no checkpoint mapping")
    for key, parts in merged.items():
        entries.append(_merged_entry(key, sorted(parts, key=lambda p: p[1])))
    return entries


def _merged_entry(key, parts):
    """A checkpoint tensor whose leading (output-channel) axis is split over two variables."""
    first, second = parts[0][0], parts[1][0]
    n = int(first.shape[-1])
    is_kernel = len(first.shape) == 4

    def to_keras(w):
        return _conv(w) if is_kernel else w  # split in two by load_lkdnet_state_dict

    def to_torch(values):
        joined = np.concatenate(values, axis=-1)
        return np.transpose(joined, (3, 2, 0, 1)) if is_kernel else joined

    return _Entry(key, (first, second, n), to_keras, to_torch)


def load_lkdnet_state_dict(model, state_dict):
    """Fills ``model`` (an ``LKDNet``) from an official checkpoint's state dict (numpy arrays).

    Raises:
        WeightConversionError: listing unknown keys, keys the network needs but the checkpoint
            lacks, and keys whose shapes do not match (nothing is assigned then).
    """
    tensors = {_strip(k): v for k, v in state_dict.items() if not k.endswith(_SKIPPED)}
    entries = _entries(model)
    by_key = {e.key: e for e in entries}
    unknown = sorted(set(tensors) - set(by_key))
    missing = sorted(set(by_key) - set(tensors))
    values, misshaped = [], []
    for entry in entries:
        if entry.key not in tensors:
            continue
        array = np.asarray(tensors[entry.key], dtype=np.float32)
        converted = entry.to_keras(array) if entry.to_keras else array
        if isinstance(entry.variable, tuple):  # split over two variables
            first, second, n = entry.variable
            want = tuple(first.shape[:-1]) + (n + int(second.shape[-1]),)
            if converted.shape != want:
                misshaped.append(f"{entry.key}: checkpoint {array.shape}, network needs {_torch_shape(want)}")
                continue
            values += [(first, converted[..., :n]), (second, converted[..., n:])]
        elif converted.shape != tuple(entry.variable.shape):
            misshaped.append(f"{entry.key}: checkpoint {array.shape}, network needs "
                             f"{_torch_shape(tuple(entry.variable.shape), entry)}")
        else:
            values.append((entry.variable, converted))
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown key(s) (not in {model.name}): {', '.join(unknown)}")
    if missing:
        problems.append(f"{len(missing)} missing key(s) (the network needs them): {', '.join(missing)}")
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped key(s): {'; '.join(misshaped)}")
    if problems:
        raise WeightConversionError("the checkpoint does not match the network: " + " | ".join(problems))
    keras.backend.batch_set_value(values)
    return model


def lkdnet_state_dict(model, prefix=PREFIX):
    """The model's weights as an official-layout state dict (the inverse of loading)."""
    out = collections.OrderedDict()
    for entry in _entries(model):
        if isinstance(entry.variable, tuple):
            first, second, _ = entry.variable
            out[prefix + entry.key] = entry.to_torch([first.numpy(), second.numpy()])
        else:
            value = entry.variable.numpy()
            out[prefix + entry.key] = entry.to_torch(value) if entry.to_torch else value
    return out


def _strip(key):
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


def _torch_shape(keras_shape, entry=None):
    if entry is not None and entry.to_torch is not None:
        return tuple(entry.to_torch(np.zeros(keras_shape, np.float32)).shape)
    if len(keras_shape) == 4:
        return (keras_shape[3], keras_shape[2], keras_shape[0], keras_shape[1])
    return keras_shape
