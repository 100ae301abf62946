import numpy as np
import pytest

from keras_dehaze.backend import tf
from keras_dehaze.layers import DeformableConv2D
from tests.layer_testing import run_layer_test


def numpy_dcn(x, offsets, mask, kernel, bias):
    """Loop reference of DCNv2 (stride 1, pad k//2): bilinear sampling, zeros outside."""
    b, h, w, c = x.shape
    k = kernel.shape[0]
    pad = k // 2
    out = np.zeros((b, h, w, kernel.shape[-1]))

    def pixel(n, yy, xx):
        if 0 <= yy < h and 0 <= xx < w:
            return x[n, yy, xx]
        return np.zeros(c)

    for n in range(b):
        for y in range(h):
            for xq in range(w):
                acc = np.zeros(kernel.shape[-1])
                for i in range(k):
                    for j in range(k):
                        t = i * k + j
                        py = y - pad + i + offsets[n, y, xq, 2 * t]
                        px = xq - pad + j + offsets[n, y, xq, 2 * t + 1]
                        y0, x0 = int(np.floor(py)), int(np.floor(px))
                        ly, lx = py - y0, px - x0
                        val = (
                            (1 - ly) * (1 - lx) * pixel(n, y0, x0)
                            + (1 - ly) * lx * pixel(n, y0, x0 + 1)
                            + ly * (1 - lx) * pixel(n, y0 + 1, x0)
                            + ly * lx * pixel(n, y0 + 1, x0 + 1)
                        )
                        acc += mask[n, y, xq, t] * val @ kernel[i, j]
                out[n, y, xq] = acc + bias
    return out


def _layer_with_offsets(rng, channels=3, filters=4, sampler="gather", scale=2.5, dtype="float32"):
    """A DCN whose offset conv predicts large, fractional, partly out-of-border offsets."""
    layer = DeformableConv2D(filters, 3, sampler=sampler, dtype=dtype)
    layer.build((None, None, None, channels))
    k_off = rng.normal(0, 0.3, layer.offset_conv.kernel.shape)
    b_off = rng.uniform(-scale, scale, layer.offset_conv.bias.shape)
    layer.offset_conv.set_weights([k_off, b_off])
    layer.kernel.assign(rng.normal(0, 0.5, layer.kernel.shape))
    layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    return layer


def _reference(layer, x):
    om = layer.offset_conv(x).numpy().astype(np.float64)
    taps = layer.kernel_size**2
    offsets, mask = om[..., : 2 * taps], 1 / (1 + np.exp(-om[..., 2 * taps :]))
    return numpy_dcn(x.numpy().astype(np.float64), offsets, mask, layer.kernel.numpy(), layer.bias.numpy())


@pytest.mark.parametrize("index_math", ["int", "float"])
def test_gather_sampler_matches_numpy_reference_with_fractional_and_out_of_border_offsets(index_math):
    rng = np.random.default_rng(0)
    layer = _layer_with_offsets(rng, scale=4.0)
    layer.index_math = index_math  # up to 4 px: many taps land outside a 7x6 map
    x = tf.constant(rng.uniform(0, 1, (2, 7, 6, 3)), tf.float32)
    om = layer.offset_conv(x).numpy()[..., :18]
    assert np.abs(om - np.round(om)).max() > 0.3, "offsets should be fractional"
    np.testing.assert_allclose(layer(x).numpy(), _reference(layer, x), atol=1e-4)


def test_shift_sampler_matches_reference_on_bounded_offsets():
    rng = np.random.default_rng(1)
    layer = _layer_with_offsets(rng, sampler="shift", scale=3.0)
    x = tf.constant(rng.uniform(0, 1, (1, 6, 5, 3)), tf.float32)
    om = layer.offset_conv(x).numpy().astype(np.float64)
    r = layer.max_offset
    offsets = r * np.tanh(om[..., :18] / r)  # the sampler's documented bound
    mask = 1 / (1 + np.exp(-om[..., 18:]))
    expected = numpy_dcn(x.numpy(), offsets, mask, layer.kernel.numpy(), layer.bias.numpy())
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-4)


def test_zero_offsets_and_initial_mask_equal_half_a_plain_conv():
    rng = np.random.default_rng(2)
    layer = DeformableConv2D(5, 3)
    x = tf.constant(rng.uniform(0, 1, (2, 9, 8, 4)), tf.float32)
    y = layer(x)  # fresh layer: zero offset conv -> offsets 0, mask sigmoid(0) = 0.5
    plain = tf.nn.conv2d(x, layer.kernel, 1, "SAME") + layer.bias
    np.testing.assert_allclose(y.numpy(), 0.5 * plain.numpy() + 0.5 * layer.bias.numpy(), atol=1e-5)


# The shift sampler's Jacobian takes about 15 s (its backward graph is large): -m slow. Its forward
# against the reference and its gradient flow (run_layer_test) stay in the default run.
@pytest.mark.parametrize("sampler", ["gather", pytest.param("shift", marks=pytest.mark.slow)])
def test_gradients_match_float64_numerical_jacobian(sampler):
    rng = np.random.default_rng(3)
    layer = _layer_with_offsets(rng, channels=2, filters=2, sampler=sampler, scale=1.5, dtype="float64")
    # Keep offsets away from integers, where bilinear interpolation has kinks.
    layer.offset_conv.set_weights([layer.offset_conv.kernel.numpy() * 0.02, layer.offset_conv.bias.numpy()])
    bias = layer.offset_conv.bias.numpy()
    frac = bias - np.floor(bias)
    bias[:18] += np.where(np.abs(frac[:18] - 0.5) > 0.35, 0.5, 0.0)
    layer.offset_conv.bias.assign(bias)
    x = tf.constant(rng.uniform(0, 1, (1, 4, 4, 2)), tf.float64)
    forward = tf.function(layer)  # ~250 evaluations below: traced once instead of run op by op
    theoretical, numerical = tf.test.compute_gradient(forward, [x], delta=1e-5)
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)
    # Gradient wrt the offset/mask conv parameters (through the bilinear weights).
    variables = [layer.offset_conv.bias, layer.kernel]
    for var in variables:
        def f(v, var=var):
            old = var.numpy()
            var.assign(v)
            out = layer(x)
            var.assign(old)
            return out

        with tf.GradientTape() as tape:
            out = layer(x)
        analytic = tape.gradient(out, var).numpy()
        # Numerical gradient of sum(out) wrt var, float64 central differences.
        base = var.numpy()
        num = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            for sign in (1, -1):
                pert = base.copy()
                pert[idx] += sign * 1e-6
                var.assign(pert)
                num[idx] += sign * tf.reduce_sum(forward(x)).numpy() / 2e-6
        var.assign(base)
        np.testing.assert_allclose(analytic, num, atol=1e-5)


def test_layer_contract_and_errors():
    x = tf.random.uniform((2, 8, 8, 4))
    run_layer_test(DeformableConv2D(6, 3), x, expected_shape=(2, 8, 8, 6), expected_trainable_weights=4)
    run_layer_test(DeformableConv2D(6, 3, sampler="shift", max_offset=1), x, expected_shape=(2, 8, 8, 6), export=False)
    with pytest.raises(ValueError, match="odd kernel_size"):
        DeformableConv2D(4, 2)
    with pytest.raises(ValueError, match="index_math"):
        DeformableConv2D(4, 3, index_math="double")
    with pytest.raises(ValueError, match="sampler"):
        DeformableConv2D(4, 3, sampler="bilinear")
