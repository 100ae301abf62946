"""Padding, cropping and clipping layers that let a network take any input size."""

from keras_dehaze.backend import keras, register, tf


@register
class ReflectionPad2D(keras.layers.Layer):
    """Reflection padding of H and W (PyTorch ``nn.ReflectionPad2d``).

    Built from one-row/one-column slices and a concatenation instead of ``tf.pad(REFLECT)``:
    TFLite's MIRROR_PAD is not taken by XNNPACK and its reference kernel cost 35% of LKD-S's
    CPU time; slices and concatenation are delegated on the CPU and on the GPU delegates
    (REVERSE_V2 would be shorter but the classic GPU delegate refuses it). Same values exactly.

    Args:
        padding: pixels added on every side.
        **kwargs: standard layer arguments.

    Example:
        >>> ReflectionPad2D(3)(tf.zeros([1, 8, 8, 3])).shape  # [1, 14, 14, 3]

    Reference:
        AE-CR-Net reference code (reflection pad 3 around the 7x7 convolutions).
    """

    def __init__(self, padding, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        return self._reflect(self._reflect(x, 1), 2)

    def _reflect(self, x, axis):
        p = self.padding
        if p == 0:
            return x
        size = x.shape[axis]
        if size is not None and p >= size:
            raise ValueError(f"{self.name}: reflection padding of {p} needs a side longer than "
                             f"{p} pixels, got {size}")
        row = (lambda i, j: x[:, i:j]) if axis == 1 else (lambda i, j: x[:, :, i:j])
        before = [row(i, i + 1) for i in range(p, 0, -1)]  # rows p .. 1
        after = [row(-i - 1, -i) for i in range(1, p + 1)]  # rows -2 .. -p-1
        return tf.concat(before + [x] + after, axis)

    def compute_output_shape(self, s):
        grow = lambda d: None if d is None else d + 2 * self.padding  # noqa: E731
        return tf.TensorShape([s[0], grow(s[1]), grow(s[2]), s[3]])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@register
class PadToMultiple(keras.layers.Layer):
    """Pads H and W at the bottom/right up to a multiple of ``multiple``.

    Reflection padding where the image is large enough; images smaller than the padding (e.g.
    3x5) replicate their last row/column instead, since reflection needs pad < size. With a
    static input size (a fixed-size TFLite export) the choice is made at trace time, so the
    exported graph holds a single MIRROR_PAD (or nothing) and no control flow.

    Args:
        multiple: the stride product of the network (4 for AE-CR-Net).
        min_size: pad smaller sides up to at least this (rounded up to ``multiple``), so that
            layers with large reflection pads deeper in the network always have room (LKD-Net
            reflects 9 pixels at 1/4 resolution: min_size 40). 0: no minimum.
        **kwargs: standard layer arguments.

    Example:
        >>> PadToMultiple(4)(tf.zeros([1, 413, 550, 3])).shape  # [1, 416, 552, 3]

    Reference:
        The AE-CR-Net reference code crashes unless H and W are multiples of 4 (Wu et al., CVPR 2021, github.com/GlassyWu/AECR-Net).
    """

    def __init__(self, multiple, min_size=0, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)
        self.min_size = int(min_size)

    def _target(self, d):
        """Padded length of a side of length ``d`` (python int or scalar tensor)."""
        m = self.multiple
        up = (d + m - 1) // m * m
        floor = -(-self.min_size // m) * m  # min_size rounded up to the multiple
        if isinstance(d, int):
            return max(up, floor)
        return tf.maximum(up, floor)

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        if h is not None and w is not None:
            ph, pw = self._target(h) - h, self._target(w) - w
            if ph == 0 and pw == 0:
                return x
            if ph < h and pw < w:
                return _reflect(x, ph, pw)
            return _replicate(x, ph, pw)
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        ph, pw = self._target(h) - h, self._target(w) - w
        return tf.cond(
            tf.logical_and(ph < h, pw < w),
            lambda: _reflect(x, ph, pw),
            lambda: _replicate(x, ph, pw),
        )

    def compute_output_shape(self, s):
        up = lambda d: None if d is None else self._target(int(d))  # noqa: E731
        return tf.TensorShape([s[0], up(s[1]), up(s[2]), s[3]])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple, "min_size": self.min_size}


def _reflect(x, ph, pw):
    return tf.pad(x, [[0, 0], [0, ph], [0, pw], [0, 0]], mode="REFLECT")


def _replicate(x, ph, pw):
    x = tf.concat([x, tf.repeat(x[:, -1:], ph, axis=1)], axis=1)
    return tf.concat([x, tf.repeat(x[:, :, -1:], pw, axis=2)], axis=2)


@register
class CropLike(keras.layers.Layer):
    """Crops ``inputs[0]`` to the height and width of ``inputs[1]`` (top-left aligned).

    Example:
        >>> CropLike()([padded_output, original_input])

    Reference:
        Undoes ``PadToMultiple``.
    """

    def call(self, inputs):
        x, ref = inputs
        if x.shape[1] is not None and ref.shape[1] is not None and x.shape[1:3] == ref.shape[1:3]:
            return x  # static and equal: no op in the exported graph
        shape = tf.shape(ref)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shape):
        x, ref = input_shape
        return tf.TensorShape([x[0], ref[1], ref[2], x[3]])


@register
class ClipAtInference(keras.layers.Layer):
    """Clips to [0, 1] at inference; identity while training so gradients are not cut.

    Example:
        >>> y = ClipAtInference()(x, training=False)

    Reference:
        Dehazed images live in [0, 1]; the reference network ends in tanh.
    """

    def call(self, x, training=None):
        if training:
            return x
        return tf.clip_by_value(x, 0.0, 1.0)
