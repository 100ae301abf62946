"""The three small layers LKD-Net needs beyond Keras' built-ins (all lower to TFLite builtins)."""

from keras_dehaze.backend import keras, register, tf


@register
class ImageLayerNorm(keras.layers.Layer):
    """Layer normalisation over all of (H, W, C) of each image, with a per-channel affine.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, where mean and var are taken over
    every pixel and channel of one image (not per pixel as transformer LayerNorm). Because the
    statistics cover the whole image, a tile of a photo gets other statistics than the photo:
    see ``keras_dehaze.tiling`` for how large photos are handled.

    Args:
        epsilon: added to the variance inside the square root (1e-5 in the reference).
        **kwargs: standard layer arguments.

    Example:
        >>> ImageLayerNorm()(tf.random.normal([2, 8, 8, 24])).shape  # [2, 8, 8, 24]

    Reference:
        Luo et al., "LKD-Net: Large Kernel Convolution Network for Single Image Dehazing",
        ICME 2023; github.com/SWU-CS-MediaLab/LKD-Net (models/LKD.py, ``LayerNorm``).
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.weight = self.add_weight(name="weight", shape=(c,), initializer="ones")
        self.bias = self.add_weight(name="bias", shape=(c,), initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        # Means over (H, W) first, then C: XNNPACK takes spatial MEANs and element-wise
        # SUB/MUL/ADD on full tensors, so only 1x1xC work is left to reference kernels.
        mean = tf.reduce_mean(tf.reduce_mean(x, axis=[1, 2], keepdims=True), axis=3, keepdims=True)
        d = x - mean
        var = tf.reduce_mean(tf.reduce_mean(d * d, axis=[1, 2], keepdims=True), axis=3,
                             keepdims=True)
        return d * (tf.math.rsqrt(var + self.epsilon) * self.weight) + self.bias

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@register
class ChannelScale(keras.layers.Layer):
    """Multiplies each channel by a learnable scale (initialised to 1).

    Example:
        >>> ChannelScale()(tf.ones([1, 4, 4, 8])).shape  # [1, 4, 4, 8]

    Reference:
        LKD-Net CEFN ``scaler`` (models/LKD.py).
    """

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(int(input_shape[-1]),), initializer="ones")
        super().build(input_shape)

    def call(self, x):
        return x * self.scale

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)


@register
class DepthToSpace(keras.layers.Layer):
    """``tf.nn.depth_to_space`` as a layer (TFLite DEPTH_TO_SPACE).

    PyTorch's ``PixelShuffle`` orders input channels as ``c * r * r + i * r + j``, TensorFlow as
    ``(i * r + j) * C + c``; converted weights are permuted once (see
    ``keras_dehaze.zoo.lkdnet_weights``), so the graph holds no channel shuffle.

    Args:
        block_size: the upscaling factor r.
        **kwargs: standard layer arguments.

    Example:
        >>> DepthToSpace(2)(tf.zeros([1, 4, 4, 12])).shape  # [1, 8, 8, 3]

    Reference:
        Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
        Sub-Pixel Convolutional Neural Network", CVPR 2016.
    """

    def __init__(self, block_size, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, x):
        return tf.nn.depth_to_space(x, self.block_size)

    def compute_output_shape(self, s):
        r = self.block_size
        grow = lambda d: None if d is None else d * r  # noqa: E731
        return tf.TensorShape([s[0], grow(s[1]), grow(s[2]), None if s[3] is None else s[3] // (r * r)])

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}
