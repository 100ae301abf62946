"""CORUN: the cooperative unfolding network of Fang et al. (NeurIPS 2024)."""

from keras_dehaze.backend import keras
from keras_dehaze.layers import (
    CPMM,
    ClipAtInference,
    ConstantMap,
    CropLike,
    PadToMultiple,
    SceneStep,
    TransmissionStep,
)
from keras_dehaze.layers.unfolding import SIGMOID_0_3

# Presets as data (keras-hub style): builder arguments + metadata. Parameter counts are
# asserted in tests/models/test_corun.py.
CORUN_PRESETS = {
    "corun": {
        "config": dict(stages=4, width=30, levels=3, num_blocks=1, ffn_expansion=4, name="corun"),
        "metadata": {
            "params": 18_674_262,
            "description": (
                "Reference CORUN (ref code CORUN(depth=4)): 4 stages, 7 CPMM U-Nets of width "
                "30/60/120, bottleneck 240, 1 spectral transformer block per level. 18.67M params."
            ),
        },
    },
    "corun_compact": {
        "config": dict(stages=4, width=8, levels=3, num_blocks=1, ffn_expansion=4, name="corun_compact"),
        "metadata": {
            "params": 1_381_866,
            "description": (
                "Compact CORUN for CPU and edge: the reference layout (4 stages, 3 levels, 1 "
                "block per level) at width 8/16/32, bottleneck 64. 1.38M params (7.4%)."
            ),
        },
    },
}


def CORUN(
    stages=4,
    width=30,
    levels=3,
    num_blocks=1,
    ffn_expansion=4,
    lambda_init=SIGMOID_0_3,
    lambda_parametrization="direct",
    initial_transmission=0.5,
    return_transmission=False,
    input_shape=(None, None, 3),
    batch_size=None,
    name="corun",
):
    """Builds CORUN as a Functional model mapping hazy RGB in [0, 1] to dehazed RGB in [0, 1].

    Simplified ASM with A = 1: ``P = J * T + 1 - T``. Start J0 = J^0 = P, T0 = 0.5. Stage
    k = 1..K (reference code ``Basic_block_fix_Plus``):

        T^_k = TGDM(P, J^_{k-1}, T_{k-1})              # TransmissionStep
        T_k  = T-CPMM([T^_k, J_{k-1}])  (k < K);  T_K = T^_K
        J^_k = SGDM(P, T^_k, J_{k-1})                  # SceneStep: uses T^_k, not T_k
        J_k  = S-CPMM([J^_k, T^_k])                    # residual on J^_k

    so the refined T_k only feeds the next stage's TGDM. The output is J_K (not clipped by the
    network itself; clipped to [0, 1] here at inference only) and optionally T^_K, the
    transmission the reference uses for its re-hazing loss ``J T + 1 - T ~ P``. Any input size
    works: reflect padding to a multiple of 2^levels (8) and cropping back.

    Args:
        stages: K, number of unfolding stages (reference 4).
        width, levels, num_blocks, ffn_expansion: size of every CPMM (reference 30, 3, 1, 4).
        lambda_init, lambda_parametrization: the per-stage step weights of TGDM and SGDM
            (reference: value sigmoid(0.3), used directly); see ``TransmissionStep``.
        initial_transmission: T0 (reference 0.5).
        return_transmission: False (default): one output, the dehazed image (a drop-in
            dehazer). True: ``[dehazed, transmission]`` with transmission T^_K, [B, H, W, 1].
        input_shape, batch_size: fix them (e.g. (256, 256, 3), 1) for a TFLite export.
        name: model name.

    Returns:
        A ``keras.Model``. Presets: ``CORUN_PRESETS`` (18,674,262 and 1,381,866 parameters).

    Reference:
        Fang et al., "Real-world Image Dehazing with Coherence-based Label Generator and
        Cooperative Unfolding Network", NeurIPS 2024; github.com/cnyvfang/CORUN-Colabator
        (corun_arch.py: ``CORUN``, ``Basic_block_fix_Plus``, ``MST``).
    """
    if stages < 1:
        raise ValueError(f"CORUN needs at least one stage, got {stages}")
    step_args = dict(lambda_init=lambda_init, lambda_parametrization=lambda_parametrization)
    cpmm_args = dict(width=width, levels=levels, num_blocks=num_blocks, ffn_expansion=ffn_expansion)

    inputs = keras.Input(shape=input_shape, batch_size=batch_size, name="hazy")
    hazy = PadToMultiple(2**levels, name="pad_to_multiple")(inputs)
    t = ConstantMap(initial_transmission, channels=1, name="initial_transmission")(hazy)
    scene, scene_hat = hazy, hazy
    for k in range(1, stages + 1):
        t_hat = TransmissionStep(**step_args, name=f"tgdm_{k}")([hazy, scene_hat, t])
        t = CPMM(**cpmm_args, name=f"t_cpmm_{k}")([t_hat, scene]) if k < stages else t_hat
        scene_hat = SceneStep(**step_args, name=f"sgdm_{k}")([hazy, t_hat, scene])
        scene = CPMM(**cpmm_args, name=f"s_cpmm_{k}")([scene_hat, t_hat])

    dehazed = ClipAtInference(name="dehazed")(CropLike(name="crop")([scene, inputs]))
    if not return_transmission:
        return keras.Model(inputs, dehazed, name=name)
    transmission = CropLike(name="transmission")([t_hat, inputs])
    return keras.Model(inputs, [dehazed, transmission], name=name)


def corun_from_preset(preset, **overrides):
    """Builds a ``CORUN_PRESETS`` entry; keyword arguments override the preset's config."""
    if preset not in CORUN_PRESETS:
        raise ValueError(f"Unknown CORUN preset {preset!r}; known: {sorted(CORUN_PRESETS)}")
    return CORUN(**{**CORUN_PRESETS[preset]["config"], **overrides})


__all__ = ["CORUN", "CORUN_PRESETS", "corun_from_preset"]
