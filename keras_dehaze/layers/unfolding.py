"""The gradient-descent modules of CORUN's deep unfolding (TGDM, SGDM) and its constant T0 map.

CORUN writes the atmospheric scattering model with A = 1 as ``P = J * T + 1 - T`` (P hazy,
J clear scene, T transmission) and alternates, per stage k, a closed-form update of T and one
of J, each followed by a learned proximal network (``CPMM``). The closed-form updates are
these layers; each has one learnable step weight lambda per stage.

What each step minimises (checked numerically in tests/layers/test_unfolding.py), per pixel, with
u_c = 1 - J^_{k-1}^c:

- TGDM: ``T^_k = argmin_T sum_c (1/u_c) [((1 - P^c) - T u_c)^2 + lam_t (T - T_{k-1})^2]``
  = ``sum_c[(1 - P^c) + lam_t T_{k-1} / u_c] / sum_c[u_c + lam_t / u_c]`` (the reference code:
  numerator and denominator are summed over channels separately; (1 - P) is NOT multiplied by
  u). The channel weights 1/u_c are what makes this the reference's formula rather than the
  unweighted least-squares solution.
- SGDM: ``J^_k = argmin_J ||P - J T^ - 1 + T^||^2 + lam_j ||J - J_{k-1}||^2``
  = ``(T^ P + T^^2 - T^ + lam_j J_{k-1}) / (T^^2 + lam_j)``, per channel.
"""

import math

from keras_dehaze.backend import keras, register, tf

# The reference code initialises each step weight to the VALUE sigmoid(0.3) and uses it as is.
SIGMOID_0_3 = 1.0 / (1.0 + math.exp(-0.3))  # 0.574442516811659
_PARAMETRIZATIONS = ("direct", "sigmoid")


class _StepLambda(keras.layers.Layer):
    """Shared lambda handling of the two gradient-descent steps (one weight per layer/stage)."""

    def __init__(self, lambda_init=SIGMOID_0_3, lambda_parametrization="direct", eps=1e-7, **kwargs):
        super().__init__(**kwargs)
        if lambda_parametrization not in _PARAMETRIZATIONS:
            raise ValueError(
                f"lambda_parametrization must be one of {_PARAMETRIZATIONS}, got {lambda_parametrization!r}"
            )
        self.lambda_init = float(lambda_init)
        self.lambda_parametrization = lambda_parametrization
        self.eps = float(eps)
        if lambda_parametrization == "sigmoid" and not 0.0 < self.lambda_init < 1.0:
            raise ValueError(f"lambda_init must be in (0, 1) with the sigmoid parametrization, got {lambda_init}")

    def build(self, input_shape):
        raw = self.lambda_init
        if self.lambda_parametrization == "sigmoid":
            raw = math.log(raw / (1.0 - raw))  # logit: sigmoid(raw) == lambda_init
        self.step_lambda = self.add_weight(
            name="step_lambda", shape=(), initializer=keras.initializers.Constant(raw), trainable=True
        )
        super().build(input_shape)

    @property
    def effective_lambda(self):
        """The lambda used in the update (the weight itself, or sigmoid of it)."""
        lam = tf.cast(self.step_lambda, self.compute_dtype)
        return tf.sigmoid(lam) if self.lambda_parametrization == "sigmoid" else lam

    def _nonzero(self, x):
        """Replaces exact zeros by eps (the reference's ``masked_fill(x == 0, eps)``)."""
        return tf.where(tf.equal(x, 0.0), tf.cast(self.eps, x.dtype), x)

    def get_config(self):
        config = super().get_config()
        config.update(
            lambda_init=self.lambda_init, lambda_parametrization=self.lambda_parametrization, eps=self.eps
        )
        return config


@register
class TransmissionStep(_StepLambda):
    """TGDM: the closed-form transmission update of CORUN, ``[P, J^_{k-1}, T_{k-1}] -> T^_k``.

    ``T^ = sum_c[(1 - P) + lam T_prev / u] / sum_c[u + lam / u]``, u = 1 - J^_{k-1} with exact
    zeros replaced by ``eps``, clipped to [t_min, t_max]. It is the minimiser of
    ``sum_c (1/u_c) [((1 - P^c) - T u_c)^2 + lam (T - T_prev)^2]`` (module docstring).

    Computed as ``(A h + lam T_prev) / (B h + lam)`` with A = sum_c(1 - P), B = sum_c u and
    h = 1 / sum_c(1/u) = m / sum_c(m/u), m = min_c u: algebraically the reference's quotient,
    but no 1/u term is ever formed, so near-white pixels (u = eps) do not overflow under float16
    (GPU delegate), where the reference form gives inf/inf = NaN. Assumes u >= 0, i.e. the
    images are in [0, 1] as everywhere in CORUN (J^ is clipped to [0, 1]).

    Args:
        lambda_init: initial effective step weight (reference: sigmoid(0.3) = 0.5744).
        lambda_parametrization: "direct" (reference: the weight is lambda, unconstrained) or
            "sigmoid" (the weight is logit(lambda), so lambda stays in (0, 1)).
        t_min, t_max: clip range of T^ (reference 0.05, 0.999).
        eps: replaces exact zeros of 1 - J^ and of the denominator (reference 1e-7).
        **kwargs: standard layer arguments.

    Inputs: ``[hazy P [B,H,W,C], scene_hat J^_{k-1} [B,H,W,C], transmission T_{k-1} [B,H,W,1]]``.
    Output: ``T^_k``, [B, H, W, 1].

    Example:
        >>> t_hat = TransmissionStep()([hazy, hazy, tf.fill([1, 8, 8, 1], 0.5)])  # stage 1

    Reference:
        Fang et al., "Real-world Image Dehazing with Coherence-based Label Generator and
        Cooperative Unfolding Network", NeurIPS 2024 (TGDM); github.com/cnyvfang/CORUN-Colabator
        (``ProximalTransmissionBlock`` in corun_arch.py).
    """

    def __init__(self, lambda_init=SIGMOID_0_3, lambda_parametrization="direct", t_min=0.05, t_max=0.999,
                 eps=1e-7, **kwargs):
        super().__init__(lambda_init, lambda_parametrization, eps, **kwargs)
        self.t_min = float(t_min)
        self.t_max = float(t_max)

    def call(self, inputs):
        hazy, scene_hat, t_prev = inputs
        lam = self.effective_lambda
        u = self._nonzero(1.0 - scene_hat)
        a = tf.reduce_sum(1.0 - hazy, axis=-1, keepdims=True)
        b = tf.reduce_sum(u, axis=-1, keepdims=True)
        m = tf.reduce_min(u, axis=-1, keepdims=True)
        h = m / tf.reduce_sum(m / u, axis=-1, keepdims=True)  # = 1 / sum_c(1 / u_c)
        den = self._nonzero(b * h + lam)
        return tf.clip_by_value((a * h + lam * t_prev) / den, self.t_min, self.t_max)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(list(input_shape[0])[:-1] + [1])

    def get_config(self):
        return {**super().get_config(), "t_min": self.t_min, "t_max": self.t_max}


@register
class SceneStep(_StepLambda):
    """SGDM: the closed-form scene update of CORUN, ``[P, T^_k, J_{k-1}] -> J^_k``.

    ``J^ = (T P + T^2 - T + lam J_prev) / (T^2 + lam)`` per channel (T broadcast over
    channels), exact zeros of the denominator replaced by ``eps``, clipped to [0, 1]. It is the
    minimiser of ``||P - J T - 1 + T||^2 + lam ||J - J_prev||^2``.

    Args:
        lambda_init: initial effective step weight (reference: sigmoid(0.3) = 0.5744).
        lambda_parametrization: "direct" (reference) or "sigmoid"; see ``TransmissionStep``.
        clip: clip J^ to [0, 1] (reference: True).
        eps: replaces exact zeros of the denominator (reference 1e-7).
        **kwargs: standard layer arguments.

    Inputs: ``[hazy P [B,H,W,C], transmission T^_k [B,H,W,1], scene J_{k-1} [B,H,W,C]]``.
    Output: ``J^_k``, [B, H, W, C].

    Example:
        >>> j_hat = SceneStep()([hazy, t_hat, hazy])

    Reference:
        Fang et al., NeurIPS 2024 (SGDM); github.com/cnyvfang/CORUN-Colabator
        (``ProximalDehazingBlock`` in corun_arch.py).
    """

    def __init__(self, lambda_init=SIGMOID_0_3, lambda_parametrization="direct", clip=True, eps=1e-7, **kwargs):
        super().__init__(lambda_init, lambda_parametrization, eps, **kwargs)
        self.clip = bool(clip)

    def call(self, inputs):
        hazy, t, scene_prev = inputs
        lam = self.effective_lambda
        t2 = t * t
        out = (t * hazy + t2 - t + lam * scene_prev) / self._nonzero(t2 + lam)
        return tf.clip_by_value(out, 0.0, 1.0) if self.clip else out

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "clip": self.clip}


@register
class ConstantMap(keras.layers.Layer):
    """A constant map with the batch and spatial size of the input (CORUN's T0 = 0.5).

    With a static input shape (fixed-size export) the output is a compile-time constant.

    Args:
        value: the fill value.
        channels: channels of the output.
        **kwargs: standard layer arguments.

    Example:
        >>> ConstantMap(0.5)(tf.zeros([2, 8, 8, 3])).shape  # [2, 8, 8, 1], all 0.5

    Reference:
        github.com/cnyvfang/CORUN-Colabator, corun_arch.py: ``init_t = ones(B, 1, H, W) - 0.5``.
    """

    def __init__(self, value=0.5, channels=1, **kwargs):
        super().__init__(**kwargs)
        self.value = float(value)
        self.channels = int(channels)

    def call(self, x):
        static = x.shape[:3]
        if all(d is not None for d in static):
            shape = list(static) + [self.channels]
        else:
            dyn = tf.shape(x)
            shape = tf.stack([dyn[0], dyn[1], dyn[2], self.channels])
        return tf.fill(shape, tf.cast(self.value, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(list(input_shape)[:3] + [self.channels])

    def get_config(self):
        return {**super().get_config(), "value": self.value, "channels": self.channels}


__all__ = ["TransmissionStep", "SceneStep", "ConstantMap", "SIGMOID_0_3"]
