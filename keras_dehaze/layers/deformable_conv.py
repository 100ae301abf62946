"""Modulated deformable convolution (DCNv2) written for TFLite builtin ops.

Two bilinear samplers:

* ``"gather"`` (default): exact for unbounded offsets. Each sampling position is split into the
  integer pixel grid (int32, exact) plus ``floor(offset)`` and a fractional part in [0, 1), and
  the four corners are fetched with ``tf.gather`` on the input flattened to ``[B*Hp*Wp, C]`` with
  1-D int32 indices. This converts to GATHER with 1-D indices, FLOOR, CAST, ADD, MUL: ops the
  TFLite GPU delegate accepts. Gathering with absolute float coordinates or 4-D indices loses
  precision in fp16/int8 and lowers to GATHER_ND, which the GPU delegate rejects (docs/deployment.md).
* ``"shift"`` (gather-free): offsets are bounded by ``R * tanh(o / R)`` and the bilinear weights
  ``relu(1 - |d - q|)`` are applied to (2R+1)^2 integer-shifted copies of the input made with
  PAD + STRIDED_SLICE. Only elementwise ops; exact within the bound; cost grows with (2R+1)^2.

Index arithmetic of the gather sampler (``index_math``):

* ``"int"`` (default): int32 all the way to GATHER. Exact under full-integer (int8)
  quantization, which leaves int32 tensors alone; the TFLite GPU delegate rejects int32
  MUL/ADD, so these ops stay on the CPU there.
* ``"float"``: the same integers in float32 (exact below 2^24) with a CAST to int32 right
  before GATHER, which the GPU delegate accepts. Use it for float32/float16 exports aimed at the
  GPU delegate (run the delegate without fp16 precision loss: fp16 is exact only below 2048).
  Never for int8: quantizing the index tensors would scramble them.
Both give identical weights and outputs in float32, so an export can switch.

Out-of-image samples read zeros (as DCNv2's ``dmcn_im2col_bilinear``).
"""

from keras_dehaze.backend import keras, register, tf

SAMPLERS = ("gather", "shift")
INDEX_MATH = ("int", "float")


@register
class DeformableConv2D(keras.layers.Layer):
    """Modulated deformable convolution v2 (stride 1, 'same' size output).

    An internal offset/mask conv (k x k, zero-initialised) predicts ``2*k*k`` offsets and
    ``k*k`` mask logits per pixel; the mask goes through a sigmoid. Offset channel ``2*t`` is
    the vertical (dy) and ``2*t+1`` the horizontal (dx) offset of kernel tap ``t = i*k + j``
    (row-major), channels ``2kk .. 3kk-1`` are the mask logits (the layout of the reference
    DCNv2's ``chunk(3) -> cat(o1, o2), sigmoid(mask)``). At initialisation offsets are 0 and the
    mask is 0.5 everywhere, so the layer equals 0.5 x a plain convolution with the same kernel.

    Args:
        filters: number of output channels.
        kernel_size: odd int, the k of the k x k kernel.
        sampler: "gather" (exact, unbounded offsets) or "shift" (gather-free, bounded offsets).
        max_offset: R, the offset bound of the "shift" sampler (ignored by "gather").
        index_math: "int" or "float" index arithmetic of the "gather" sampler (see module doc).
        use_bias: add a bias to the output.
        kernel_initializer, bias_initializer: for the main kernel and bias.
        **kwargs: standard layer arguments (name, dtype, ...).

    Example:
        >>> layer = DeformableConv2D(64, 3)
        >>> y = layer(tf.zeros([1, 32, 32, 16]))  # [1, 32, 32, 64]

    Reference:
        Zhu et al., "Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019.
        Wu et al., "Contrastive Learning for Compact Single Image Dehazing" (AECR-Net), CVPR 2021.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        sampler="gather",
        max_offset=2,
        index_math="int",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kernel_size % 2 != 1:
            raise ValueError(f"DeformableConv2D needs an odd kernel_size, got {kernel_size}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if index_math not in INDEX_MATH:
            raise ValueError(f"index_math must be one of {INDEX_MATH}, got {index_math!r}")
        if int(max_offset) < 1:
            raise ValueError(f"max_offset must be >= 1, got {max_offset}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.sampler = sampler
        self.max_offset = int(max_offset)
        self.index_math = index_math
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        taps = self.kernel_size**2
        # Zero init: offsets start at 0 and the mask at sigmoid(0) = 0.5 (as the reference).
        self.offset_conv = keras.layers.Conv2D(
            3 * taps,
            self.kernel_size,
            padding="same",
            kernel_initializer="zeros",
            bias_initializer="zeros",
            name="offset_conv",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        channels = int(input_shape[-1])
        k = self.kernel_size
        self.offset_conv.build(input_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(k, k, channels, self.filters),
            initializer=self.kernel_initializer,
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )
        super().build(input_shape)

    def call(self, inputs):
        k, taps = self.kernel_size, self.kernel_size**2
        om = self.offset_conv(inputs)
        offsets, mask = om[..., : 2 * taps], tf.sigmoid(om[..., 2 * taps :])
        if self.sampler == "gather":
            columns = self._sample_gather(inputs, offsets, mask)
        else:
            columns = self._sample_shift(inputs, offsets, mask)
        # columns: [B, H, W, taps*C] ordered (tap, channel), like kernel.reshape(k*k*C, filters).
        kernel = tf.reshape(self.kernel, [1, 1, taps * self.kernel.shape[2], self.filters])
        out = tf.nn.conv2d(columns, kernel, strides=1, padding="VALID")
        if self.use_bias:
            out = out + self.bias
        return out

    def _sample_gather(self, x, offsets, mask):
        k, taps, pad = self.kernel_size, self.kernel_size**2, self.kernel_size // 2
        shape = tf.shape(x)
        b, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
        # One ring of zeros: clamping coordinates to [-1, H] then reads exact zeros outside.
        hp, wp = h + 2, w + 2
        flat = tf.reshape(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), [-1, c])

        dy, dx = offsets[..., 0::2], offsets[..., 1::2]  # [B, H, W, taps] each
        fy, fx = tf.floor(dy), tf.floor(dx)
        ay, ax = dy - fy, dx - fx  # fractional parts in [0, 1)
        # Integer grid of each tap's base position plus floor(offset): whole numbers, exact in
        # int32 and in float32 (below 2^24).
        dtype = tf.int32 if self.index_math == "int" else tf.float32
        tap_y = tf.constant([i - pad for i in range(k) for _ in range(k)], dtype)
        tap_x = tf.constant([j - pad for _ in range(k) for j in range(k)], dtype)
        rows = tf.range(h)[None, :, None, None]
        cols = tf.range(w)[None, None, :, None]
        y0 = tf.cast(rows, dtype) + tap_y + tf.cast(fy, dtype)
        x0 = tf.cast(cols, dtype) + tap_x + tf.cast(fx, dtype)
        base = tf.cast(tf.range(b)[:, None, None, None] * (hp * wp), dtype)
        hi_y, hi_x, row = tf.cast(h, dtype), tf.cast(w, dtype), tf.cast(wp, dtype)

        def corner(yy, xx):  # -> [B*H*W*taps, C]; everything stays rank <= 4
            yy = tf.clip_by_value(yy, -1, hi_y) + 1
            xx = tf.clip_by_value(xx, -1, hi_x) + 1
            return tf.gather(flat, tf.cast(tf.reshape(base + yy * row + xx, [-1]), tf.int32))

        v00, v01 = corner(y0, x0), corner(y0, x0 + 1)
        v10, v11 = corner(y0 + 1, x0), corner(y0 + 1, x0 + 1)
        ay, ax, m = (tf.reshape(v, [-1, 1]) for v in (ay, ax, mask))
        top = v00 + ax * (v01 - v00)
        bottom = v10 + ax * (v11 - v10)
        sampled = (top + ay * (bottom - top)) * m
        return tf.reshape(sampled, [b, h, w, taps * c])

    def _sample_shift(self, x, offsets, mask):
        k, pad, r = self.kernel_size, self.kernel_size // 2, self.max_offset
        shape = tf.shape(x)
        h, w = shape[1], shape[2]
        offsets = r * tf.tanh(offsets / r)  # bounded to (-R, R)
        span = pad + r
        padded = tf.pad(x, [[0, 0], [span, span], [span, span], [0, 0]])

        def shifted(sy, sx):  # x shifted so that out[y, x] = in[y + sy, x + sx] (zeros outside)
            return padded[:, span + sy : span + sy + h, span + sx : span + sx + w, :]

        columns = []
        for t in range(k * k):
            i, j = divmod(t, k)
            dy, dx = offsets[..., 2 * t : 2 * t + 1], offsets[..., 2 * t + 1 : 2 * t + 2]
            acc = 0.0
            for qy in range(-r, r + 1):
                wy = tf.nn.relu(1.0 - tf.abs(dy - qy))
                for qx in range(-r, r + 1):
                    wx = tf.nn.relu(1.0 - tf.abs(dx - qx))
                    acc += (wy * wx) * shifted(i - pad + qy, j - pad + qx)
            columns.append(acc * mask[..., t : t + 1])
        return tf.concat(columns, axis=-1)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[:-1]).concatenate([self.filters])

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            sampler=self.sampler,
            max_offset=self.max_offset,
            index_math=self.index_math,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config
