"""FFA-Net style attention blocks, composed of built-in Keras layers.

Channel and pixel attention are built from GlobalAveragePooling2D, Conv2D and Multiply so that
tensorflow-model-optimization knows every op inside them (docs/deployment.md: attention built from built-in
layers quantizes fully).
"""

import functools

from keras_dehaze.backend import keras, register


@register
class FABlock(keras.layers.Layer):
    """Feature attention block: conv, ReLU, +x, conv, channel attention, pixel attention, +x.

    Args:
        filters: channels of the input and output (the block is residual).
        kernel_size: size of the two convolutions.
        reduction: channel reduction of the attention bottlenecks (256 -> 32 is 8).
        **kwargs: standard layer arguments.

    Example:
        >>> block = FABlock(256)
        >>> y = block(tf.zeros([1, 64, 64, 256]))  # same shape

    Reference:
        Qin et al., "FFA-Net: Feature Fusion Attention Network for Single Image Dehazing",
        AAAI 2020; used 6x (one block, shared weights) in AE-CR-Net (Wu et al., CVPR 2021).
    """

    def __init__(self, filters, kernel_size=3, reduction=8, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.reduction = int(reduction)
        hidden = max(1, self.filters // self.reduction)
        conv = functools.partial(keras.layers.Conv2D, dtype=self.dtype_policy)
        self.conv1 = conv(self.filters, self.kernel_size, padding="same", activation="relu", name="conv1")
        self.conv2 = conv(self.filters, self.kernel_size, padding="same", name="conv2")
        self.ca_pool = keras.layers.GlobalAveragePooling2D(keepdims=True, name="ca_pool", dtype=self.dtype_policy)
        self.ca_down = conv(hidden, 1, activation="relu", name="ca_down")
        self.ca_up = conv(self.filters, 1, activation="sigmoid", name="ca_up")
        self.pa_down = conv(hidden, 1, activation="relu", name="pa_down")
        self.pa_up = conv(1, 1, activation="sigmoid", name="pa_up")
        self.add = keras.layers.Add(dtype=self.dtype_policy)
        self.multiply = keras.layers.Multiply(dtype=self.dtype_policy)

    def build(self, input_shape):
        shape = list(input_shape)
        if shape[-1] != self.filters:
            raise ValueError(f"FABlock({self.filters}) got {shape[-1]} input channels")
        reduced = shape[:-1] + [max(1, self.filters // self.reduction)]
        pooled = [shape[0], 1, 1, self.filters]
        self.conv1.build(shape)
        self.conv2.build(shape)
        self.ca_down.build(pooled)
        self.ca_up.build(pooled[:-1] + reduced[-1:])
        self.pa_down.build(shape)
        self.pa_up.build(reduced)
        super().build(input_shape)

    def call(self, x):
        y = self.add([self.conv1(x), x])
        y = self.conv2(y)
        y = self.multiply([y, self.ca_up(self.ca_down(self.ca_pool(y)))])  # channel attention
        y = self.multiply([y, self.pa_up(self.pa_down(y))])  # pixel attention
        return self.add([y, x])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, reduction=self.reduction)
        return config
