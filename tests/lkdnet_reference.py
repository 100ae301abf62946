"""An independent numpy forward pass of LKD-Net in PyTorch's layout (NCHW, OIHW weights), read
straight from an official-layout state dict. Written from the reference code's semantics
(SWU-CS-MediaLab/LKD-Net models/LKD.py), sharing nothing with the Keras model or the converter,
so a wrong transposition, channel order or split in the converter makes the outputs differ."""

import numpy as np


def _conv(x, w, b=None, stride=1, dilation=1, groups=1):
    """Valid cross-correlation, NCHW x OIHW (PyTorch Conv2d after explicit padding)."""
    n, c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    oh = (h - dilation * (kh - 1) - 1) // stride + 1
    ow = (wd - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, o, oh, ow), np.float64)
    per = o // groups
    for g in range(groups):
        xs = x[:, g * ci:(g + 1) * ci]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dilation: i * dilation + stride * (oh - 1) + 1: stride,
                           j * dilation: j * dilation + stride * (ow - 1) + 1: stride]
                out[:, g * per:(g + 1) * per] += np.einsum("nchw,oc->nohw", patch, w[g * per:(g + 1) * per, :, i, j])
    if b is not None:
        out += b[None, :, None, None]
    return out


def _reflect(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")


def _pixel_shuffle(x, r):
    n, c, h, w = x.shape
    x = x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // (r * r), h * r, w * r)


def _bn(x, sd, p):
    scale = sd[p + ".weight"] / np.sqrt(sd[p + ".running_var"] + 1e-5)
    return (x - sd[p + ".running_mean"][None, :, None, None]) * scale[None, :, None, None] + sd[p + ".bias"][None, :, None, None]


def _block(x, sd, p):
    c = x.shape[1]
    y = _bn(x, sd, p + ".norm1")
    y = _conv(y, sd[p + ".Linear1.weight"], sd[p + ".Linear1.bias"])
    y = _conv(_reflect(y, 2), sd[p + ".DWConv.weight"], sd[p + ".DWConv.bias"], groups=c)
    y = _conv(_reflect(y, 9), sd[p + ".DWDConv.weight"], sd[p + ".DWDConv.bias"], dilation=3, groups=c)
    x = _conv(y, sd[p + ".Linear2.weight"], sd[p + ".Linear2.bias"]) + x
    y = _bn(x, sd, p + ".norm2")
    q = p + ".cemlp"
    pooled = y.mean(axis=(2, 3), keepdims=True)
    a = np.maximum(_conv(pooled, sd[q + ".ca.1.weight"], sd[q + ".ca.1.bias"]), 0)
    a = 1 / (1 + np.exp(-_conv(a, sd[q + ".ca.3.weight"], sd[q + ".ca.3.bias"])))
    attn = sd[q + ".scaler"][None] * a
    m = _conv(y, sd[q + ".mlp.mlp.0.weight"], sd[q + ".mlp.mlp.0.bias"])
    m = np.pad(m, ((0, 0), (0, 0), (1, 1), (1, 1)))
    m = np.maximum(_conv(m, sd[q + ".mlp.mlp.1.weight"], sd[q + ".mlp.mlp.1.bias"], groups=m.shape[1]), 0)
    m = _conv(m, sd[q + ".mlp.mlp.3.weight"], sd[q + ".mlp.mlp.3.bias"])
    mean = m.mean(axis=(1, 2, 3), keepdims=True)
    std = np.sqrt(((m - mean) ** 2).mean(axis=(1, 2, 3), keepdims=True) + 1e-5)
    m = (m - mean) / std * sd[q + ".norm.weight"] + sd[q + ".norm.bias"]
    return m * attn + x


def _sk_fusion(a, b, sd, p):
    n, c = a.shape[:2]
    z = (a + b).mean(axis=(2, 3), keepdims=True)
    z = _conv(np.maximum(_conv(z, sd[p + ".mlp.0.weight"]), 0), sd[p + ".mlp.2.weight"]).reshape(n, 2, c, 1, 1)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    z = z / z.sum(axis=1, keepdims=True)
    return a * z[:, 0] + b * z[:, 1]


def lkdnet_reference(image, state_dict, depths):
    """``image``: HxWx3 in [0, 1] with H, W multiples of 4 (>= 40). Returns HxWx3 in [0, 1]."""
    sd = {k[len("module."):] if k.startswith("module.") else k: np.asarray(v, np.float64) for k, v in state_dict.items()}
    x = image.transpose(2, 0, 1)[None].astype(np.float64) * 2 - 1
    f = _conv(_reflect(x, 1), sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"])

    def stage(f, i):
        for k in range(depths[i - 1]):
            f = _block(f, sd, f"layer{i}.blocks.{k}")
        return f

    f = stage(f, 1)
    skip1 = f
    f = stage(_conv(f, sd["patch_merge1.proj.weight"], sd["patch_merge1.proj.bias"], stride=2), 2)
    skip2 = f
    f = stage(_conv(f, sd["patch_merge2.proj.weight"], sd["patch_merge2.proj.bias"], stride=2), 3)
    f = _pixel_shuffle(_conv(f, sd["patch_split1.proj.0.weight"], sd["patch_split1.proj.0.bias"]), 2)
    f = _sk_fusion(f, _conv(skip2, sd["skip2.weight"], sd["skip2.bias"]), sd, "fusion1") + f
    f = stage(f, 4)
    f = _pixel_shuffle(_conv(f, sd["patch_split2.proj.0.weight"], sd["patch_split2.proj.0.bias"]), 2)
    f = _sk_fusion(f, _conv(skip1, sd["skip1.weight"], sd["skip1.bias"]), sd, "fusion2") + f
    f = stage(f, 5)
    f = _conv(_reflect(f, 1), sd["patch_unembed.proj.0.weight"], sd["patch_unembed.proj.0.bias"])
    k, b = f[:, :1], f[:, 1:]
    y = np.clip(k * x - b + x, -1, 1) * 0.5 + 0.5
    return y[0].transpose(1, 2, 0)


def random_lkdnet_state_dict(depths, seed=0, scale=0.2):
    """A random state dict with every official LKD-Net key and shape (prefix ``module.``).
    Conv weights have std 1/sqrt(fan-in), so activations stay O(1) and outputs mostly in range."""
    rng = np.random.default_rng(seed)
    sd = {}

    def put(name, *shape, positive=False, std=scale):
        v = rng.normal(0, std, shape).astype(np.float32)
        sd["module." + name] = np.abs(v) + 0.5 if positive else v

    def conv(name, o, i, k, bias=True):
        put(name + ".weight", o, i, k, k, std=1.0 / np.sqrt(i * k * k))
        if bias:
            put(name + ".bias", o)

    def bn(name, c):
        put(name + ".weight", c, positive=True)
        put(name + ".bias", c)
        put(name + ".running_mean", c)
        put(name + ".running_var", c, positive=True)
        sd["module." + name + ".num_batches_tracked"] = np.array(7, np.int64)

    widths = (24, 48, 96, 48, 24)
    conv("patch_embed.proj", 24, 3, 3)
    for s, (c, d) in enumerate(zip(widths, depths), start=1):
        for k in range(d):
            p = f"layer{s}.blocks.{k}"
            bn(p + ".norm1", c)
            conv(p + ".Linear1", c, c, 1)
            conv(p + ".DWConv", c, 1, 5)
            conv(p + ".DWDConv", c, 1, 7)
            conv(p + ".Linear2", c, c, 1)
            bn(p + ".norm2", c)
            put(p + ".cemlp.scaler", c, 1, 1, positive=True)
            conv(p + ".cemlp.ca.1", c // 8, c, 1)
            conv(p + ".cemlp.ca.3", c, c // 8, 1)
            conv(p + ".cemlp.mlp.mlp.0", 4 * c, c, 1)
            conv(p + ".cemlp.mlp.mlp.1", 4 * c, 1, 3)
            conv(p + ".cemlp.mlp.mlp.3", c, 4 * c, 1)
            put(p + ".cemlp.norm.weight", 1, c, 1, 1, positive=True)
            put(p + ".cemlp.norm.bias", 1, c, 1, 1)
        if s == 1:
            conv("patch_merge1.proj", 48, 24, 2)
            conv("skip1", 24, 24, 1)
        if s == 2:
            conv("patch_merge2.proj", 96, 48, 2)
            conv("skip2", 48, 48, 1)
        if s == 3:
            conv("patch_split1.proj.0", 48 * 4, 96, 1)
            conv("fusion1.mlp.0", 6, 48, 1, bias=False)
            conv("fusion1.mlp.2", 96, 6, 1, bias=False)
        if s == 4:
            conv("patch_split2.proj.0", 24 * 4, 48, 1)
            conv("fusion2.mlp.0", 4, 24, 1, bias=False)
            conv("fusion2.mlp.2", 48, 4, 1, bias=False)
    conv("patch_unembed.proj.0", 4, 24, 3)
    sd["module.patch_unembed.proj.0.weight"] *= 0.1  # K and B of a few tenths: few clipped pixels
    sd["module.patch_unembed.proj.0.bias"] *= 0.1
    return sd
