"""GPU-delegate compatibility checker (keras_dehaze.edge.gpu_compat, edge/gpu_compat.py) and the
TF-free reader (keras_dehaze.edge.flatbuffer).

The checker must demonstrably FLAG known-bad models: GATHER_ND, TOPK_V2,
dynamic batch, GATHER with 2-D indices, Flex ops, int32 index arithmetic, 5-D tensors, and
pass a known-good builtin-only model.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_dehaze.edge import flatbuffer, gpu_compat
import tests

REPO = Path(tests.REPO)
EDGE = REPO / "edge"


def _convert(fn, shape, path, select_tf_ops=False, fp16=False):
    import tensorflow as tf

    cf = tf.function(fn).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], None)
    if select_tf_ops:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    if fp16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    path.write_bytes(conv.convert())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import tensorflow as tf

    d = tmp_path_factory.mktemp("gpu_compat")
    rng = np.random.RandomState(0)
    w = tf.constant(rng.randn(3, 3, 3, 4).astype("float32"))
    b = tf.constant(rng.randn(4).astype("float32"))
    idx1 = tf.constant([5, 3, 1, 0, 7], tf.int32)

    def good(x):  # conv + relu + add + 1-D gather, builtin ops only, batch 1
        y = tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME") + b)
        y = y + tf.nn.conv2d(x, w, 1, "SAME")
        g = tf.gather(tf.reshape(y, [64, 4]), idx1, axis=0)
        return tf.reshape(g, [1, 5, 4])

    def sampler(x):  # flattened-index gather whose index math is done in int32
        gy = tf.reshape(tf.range(8, dtype=tf.float32), [1, 8, 1, 1])
        gx = tf.reshape(tf.range(8, dtype=tf.float32), [1, 1, 8, 1])
        iy = tf.cast(tf.floor(tf.clip_by_value(gy + x[..., :1], 0, 7)), tf.int32)
        ix = tf.cast(tf.floor(tf.clip_by_value(gx + x[..., 1:2], 0, 7)), tf.int32)
        idx = tf.reshape(iy * 8 + ix, [-1])
        return tf.reshape(tf.gather(tf.reshape(x, [64, 3]), idx), [1, 8, 8, 3])

    def sampler_float_index(x):  # same, index math in float, CAST right before GATHER
        gy = tf.reshape(tf.range(8, dtype=tf.float32), [1, 8, 1, 1])
        gx = tf.reshape(tf.range(8, dtype=tf.float32), [1, 1, 8, 1])
        fy = tf.floor(tf.clip_by_value(gy + x[..., :1], 0, 7))
        fx = tf.floor(tf.clip_by_value(gx + x[..., 1:2], 0, 7))
        idx = tf.cast(tf.reshape(fy * 8.0 + fx, [-1]), tf.int32)
        return tf.reshape(tf.gather(tf.reshape(x, [64, 3]), idx), [1, 8, 8, 3])

    s = [1, 8, 8, 3]
    return {
        "good": _convert(good, s, d / "good.tflite"),
        "good_fp16": _convert(good, s, d / "good_fp16.tflite", fp16=True),
        "gather_nd": _convert(lambda x: tf.gather_nd(x, tf.constant([[0, 1, 2], [0, 3, 4]])), s, d / "gnd.tflite"),
        "topk": _convert(lambda x: tf.math.top_k(tf.reshape(x, [1, 192]), k=5).values, s, d / "topk.tflite"),
        "dynamic": _convert(lambda x: tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME")), [None, 8, 8, 3], d / "dyn.tflite"),
        "gather_2d": _convert(
            lambda x: tf.gather(tf.reshape(x, [64, 3]), tf.constant([[0, 1], [2, 3]], tf.int32)), s, d / "g2d.tflite"
        ),
        "flex": _convert(lambda x: tf.math.cumprod(x, axis=1), s, d / "flex.tflite", select_tf_ops=True),
        "rank5": _convert(lambda x: tf.reshape(x, [1, 2, 4, 8, 3]) * 2.0, s, d / "r5.tflite"),
        "sampler_int32": _convert(sampler, s, d / "sampler_i32.tflite"),
        "sampler_float": _convert(sampler_float_index, s, d / "sampler_f32.tflite"),
        "slice_2d": _convert(lambda x: tf.reshape(x, [8, 24])[1:7:2] * 2.0, s, d / "ss2d.tflite"),
        "slice_shrink": _convert(lambda x: x[:, 0] * 2.0, s, d / "ss_shrink.tflite"),
    }


def _report(path):
    return gpu_compat.check_gpu_compatibility(path)


# ----------------------------------------------------------------------------- known-bad


def test_flags_gather_nd(models):
    r = _report(models["gather_nd"])
    assert not r.compatible
    assert r.incompatible_op_names == ["GATHER_ND"]
    assert "not in the GPU delegate's supported op set" in r.reasons_for("GATHER_ND")[0]


def test_flags_topk(models):
    r = _report(models["topk"])
    assert not r.compatible
    assert "TOPK_V2" in r.incompatible_op_names
    assert "RESHAPE" not in r.incompatible_op_names  # the reshape around it is fine


def test_flags_dynamic_batch(models):
    info = flatbuffer.load_model_info(models["dynamic"])
    assert info.inputs[0].shape_signature[0] == -1 and info.has_dynamic_inputs
    r = gpu_compat.check_gpu_compatibility(info)
    assert not r.compatible
    assert r.incompatible_ops == []  # the op itself is fine; the shape is not
    assert any("dynamic input shape" in m for m in r.model_issues)


def test_flags_gather_with_2d_indices(models):
    r = _report(models["gather_2d"])
    assert not r.compatible
    assert r.incompatible_op_names == ["GATHER"]
    assert any("1-D indices" in s for s in r.reasons_for("GATHER"))


def test_flags_flex_op(models):
    info = flatbuffer.load_model_info(models["flex"])
    assert [op.name for op in info.flex_ops()] == ["FlexCumprod"]
    assert info.custom_ops() == info.flex_ops()
    r = gpu_compat.check_gpu_compatibility(info)
    assert not r.compatible and "Flex" in r.reasons_for("FlexCumprod")[0]


def test_flags_rank5_tensors(models):
    r = _report(models["rank5"])
    assert not r.compatible
    assert any("5-D" in s for op in r.incompatible_ops for s in op.reasons)


def test_flags_int32_index_arithmetic_but_not_float_index_math(models):
    bad = _report(models["sampler_int32"])
    assert not bad.compatible
    # the int32 MUL/ADD computing the flattened index are rejected by the type rule
    assert {"MUL", "ADD"} <= set(bad.incompatible_op_names)
    assert "GATHER" not in bad.incompatible_op_names
    good = _report(models["sampler_float"])
    assert good.compatible, good.format()


# ----------------------------------------------------------------------------- known-good


def test_passes_good_model(models):
    r = _report(models["good"])
    assert r.compatible, r.format()
    assert r.incompatible_ops == [] and r.model_issues == []
    assert r.n_ops == r.n_ops_supported > 0
    assert "LiteRT" in r.rules_version and r.rule_sources["W"].startswith("https://ai.google.dev")


def test_passes_good_model_fp16_weights(models):
    info = flatbuffer.load_model_info(models["good_fp16"])
    assert info.op_histogram()["DEQUANTIZE"] >= 1  # fp16 weights are dequantized in-graph
    r = gpu_compat.check_gpu_compatibility(info)
    assert r.compatible, r.format()


def test_accepts_path_bytes_and_model_info(models):
    p = models["gather_nd"]
    for arg in (p, str(p), p.read_bytes(), flatbuffer.load_model_info(p)):
        assert not gpu_compat.check_gpu_compatibility(arg).compatible


# ----------------------------------------------------------------------------- reader


def test_op_histogram_and_details(models):
    info = flatbuffer.load_model_info(models["good"])
    hist = info.op_histogram()
    assert hist["CONV_2D"] == 1 and hist["GATHER"] == 1 and hist["RESHAPE"] == 2
    assert "GATHER_ND" not in hist and sum(hist.values()) == len(info.ops)
    assert info.flex_ops() == [] and info.custom_ops() == []
    (inp,), (out,) = info.inputs, info.outputs
    assert inp.shape == inp.shape_signature == (1, 8, 8, 3) and inp.dtype == "float32"
    assert out.shape == (1, 5, 4) and not inp.is_constant

    conv = next(op for op in info.ops if op.name == "CONV_2D")
    assert conv.input_shapes[0] == (1, 8, 8, 3) and conv.input_shapes[1] == (4, 3, 3, 3)
    assert conv.inputs_constant[:2] == (False, True)  # activation runtime, weights constant
    assert conv.options["stride_h"] == 1 and conv.options_type == "Conv2DOptions"

    gather = next(op for op in info.ops if op.name == "GATHER")
    assert gather.version == 1 and gather.input_dtypes == ("float32", "int32")
    assert gather.inputs[1].is_constant and gather.inputs[1].shape == (5,)
    assert gather.inputs[1].const_value.tolist() == [5, 3, 1, 0, 7]
    assert gather.output_shapes == ((5, 4),)

    topk = flatbuffer.load_model_info(models["topk"])
    assert topk.op_histogram() == {"RESHAPE": 1, "TOPK_V2": 1}


def test_reader_and_checker_work_without_tensorflow(models):
    code = f"""
import sys, json
sys.modules["tensorflow"] = None      # any `import tensorflow` now raises ImportError
sys.modules["tf_keras"] = None
from keras_dehaze.edge import flatbuffer, gpu_compat
try:
    import tensorflow
    raise SystemExit("tensorflow importable")
except ImportError:
    pass
info = flatbuffer.load_model_info({str(models["gather_nd"])!r})
rep = gpu_compat.check_gpu_compatibility(info)
good = gpu_compat.check_gpu_compatibility({str(models["good"])!r})
print(json.dumps({{
    "hist": dict(info.op_histogram()),
    "bad": rep.compatible, "good": good.compatible,
    "schema": flatbuffer.SCHEMA_SOURCE,
    "loaded": sorted(m for m in ("tensorflow", "ai_edge_litert") if sys.modules.get(m) is not None),
}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["hist"] == {"GATHER_ND": 1}
    assert res["bad"] is False and res["good"] is True
    assert res["loaded"] == []  # neither TF nor the ai_edge_litert package (native libs) was imported
    assert res["schema"].endswith("schema_py_generated.py")


# ----------------------------------------------------------------------------- two backends


def test_classic_and_webgpu_verdicts_are_labelled_and_differ_where_measured(models):
    """Executed on LiteRT's WebGPU accelerator (tests/edge/test_litert_gpu.py):
    TOPK_V2 and a 2-D STRIDED_SLICE run fully on it; GATHER_ND and a shrink-axis STRIDED_SLICE
    are refused. The classic OpenCL/GL delegate rules reject all four."""
    expected_webgpu = {"topk": True, "slice_2d": True, "gather_nd": False, "slice_shrink": False,
                       "good": True, "good_fp16": True}
    for key, webgpu_ok in expected_webgpu.items():
        reports = gpu_compat.check_all_backends(models[key])
        assert list(reports) == ["classic", "webgpu"]
        classic, webgpu = reports["classic"], reports["webgpu"]
        assert classic.compatible == (key in ("good", "good_fp16")), (key, classic.format())
        assert webgpu.compatible == webgpu_ok, (key, webgpu.format())
        assert classic.format().startswith("classic OpenCL/GL delegate rules: ")
        assert webgpu.format().startswith("LiteRT WebGPU accelerator rules: ")
        assert "executed check" in webgpu.format() and "ai-edge-litert 2.3.0" in webgpu.rules_version
        assert webgpu.to_dict()["backend"] == "webgpu"
    # the default stays the classic delegate's rules
    assert gpu_compat.check_gpu_compatibility(models["topk"]).backend == "classic"
    with pytest.raises(ValueError, match="backend"):
        gpu_compat.check_gpu_compatibility(models["topk"], backend="opencl")


def test_cli_prints_both_labelled_verdicts(models):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cli = [sys.executable, str(EDGE / "gpu_compat.py"), str(models["topk"])]
    both = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60)
    assert both.returncode == 1, both.stderr  # the classic verdict is NOT COMPATIBLE
    assert "classic OpenCL/GL delegate rules: NOT COMPATIBLE" in both.stdout
    assert "LiteRT WebGPU accelerator rules: COMPATIBLE" in both.stdout
    webgpu = subprocess.run(cli + ["--backend", "webgpu"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert webgpu.returncode == 0 and "classic" not in webgpu.stdout.split("\n")[0]


def test_cli_exit_codes(models):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cli = [sys.executable, str(EDGE / "gpu_compat.py")]
    bad = subprocess.run(cli + [str(models["topk"])], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1, bad.stderr
    assert "NOT COMPATIBLE" in bad.stdout and "TOPK_V2" in bad.stdout
    good = subprocess.run(cli + [str(models["good"]), "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)[0]["compatible"] is True
