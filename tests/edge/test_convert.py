"""QAT (keras_dehaze.edge.quantization) and TFLite export (edge/convert.py and keras_dehaze.edge).

Tiny AE-CR-Net (filters=4, 32x32) with a global residual, so the output carries image
structure and int8-vs-float PSNR measures quantization rather than a constant. Weights are made
to look trained: the DCN's zero-initialised offset conv gets random weights (the sampler moves
off the grid) and the zero biases random values (with a bias the converter fuses ReLU into
TRANSPOSE_CONV, as it does for real checkpoints).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_dehaze.backend import keras
from keras_dehaze.data import find_pairs, read_image, write_image
from keras_dehaze.models import AECRNet
from keras_dehaze.edge import flatbuffer, gpu_compat
from keras_dehaze.edge.conversion import psnr_between
from keras_dehaze.edge.export import center_crop, convert, random_crops
from keras_dehaze.edge.float_islands import float_islands, island_summary
from keras_dehaze.edge.gpu_rewrite import unfuse_transpose_conv_activation
from keras_dehaze.edge.interpreter import TFLiteModel
from keras_dehaze.edge.qat_finetune import export_copy, qat_finetune
from keras_dehaze.edge.quantization import (
    DeformableConv2DQuantizeConfig,
    calibrate_ranges,
    quantize_aware,
    rebuild_fixed,
)

import tensorflow_model_optimization as tfmot  # noqa: E402  (after keras_dehaze.backend)
import tests

REPO = Path(tests.REPO)

SIZE = 32
ISLAND_OPS = {"FLOOR", "CAST", "DEQUANTIZE", "QUANTIZE"}  # the DCN's floor(offset) path only


def _scene(i, h=48, w=56):
    yy, xx = np.mgrid[0:h, 0:w] / float(h)
    clear = np.stack([np.sin(3 * xx + i) * 0.4 + 0.5, yy, 0.5 * (xx + yy)], -1)
    clear += 0.1 * np.sin(9 * xx * yy + i)[..., None]
    return np.clip(clear, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """RESIDE-style paired folder: 3 scenes x 2 haze levels, 48x56."""
    root = tmp_path_factory.mktemp("pairs")
    for i in range(3):
        clear = _scene(i)
        write_image(str(root / "clear" / f"{i}.png"), clear)
        for k in (1, 2):
            t = 0.8 - 0.2 * k
            write_image(str(root / "hazy" / f"{i}_{k}.png"), clear * t + 0.85 * (1 - t))
    return root


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    model = AECRNet(filters=4, global_residual=True)
    rng = np.random.default_rng(0)
    kernel = model.get_layer("dcn").offset_conv.kernel
    kernel.assign(rng.normal(0, 0.3, kernel.shape).astype("float32"))
    for w in model.weights:
        if "bias" in w.name:
            w.assign(rng.normal(0, 0.05, w.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def images(data_dir):
    pairs = find_pairs(str(data_dir))
    return [center_crop(read_image(p.hazy), SIZE, SIZE)[None] for p in pairs[:3]]


@pytest.fixture(scope="module")
def exports(tiny, data_dir):
    """float32/float16 (index_math float), int8 after 2 QAT steps (int8 I/O), int8 PTQ (float I/O)."""
    pairs = find_pairs(str(data_dir))
    qat, losses = qat_finetune(tiny, pairs, steps=2, crop=SIZE, batch_size=2, lr=1e-4, calib_batches=2,
                               log=None, index_math="int")
    float_model = rebuild_fixed(tiny, SIZE, SIZE, index_math="float")
    qat_fixed = export_copy(qat, tiny, SIZE, SIZE, index_math="int")
    rep = random_crops([p.hazy for p in pairs], (SIZE, SIZE), 8)
    # convert() with gpu_rewrite (the default) is this conversion followed by the rewrite: one
    # conversion gives both (the default path itself: test_convert_cli_float_exports_and_report).
    fused = convert(float_model, "float32", gpu_rewrite=False)
    blobs = {
        "float32": unfuse_transpose_conv_activation(fused)[0],
        "float16": convert(float_model, "float16"),
        "int8": convert(qat_fixed, "int8", representative=rep),
        "int8_ptq_float_io": convert(rebuild_fixed(tiny, SIZE, SIZE, index_math="int"), "int8",
                                     representative=rep, int8_io=False),
    }
    blobs["float32_fused"] = fused
    return {"blobs": blobs, "float_model": float_model, "qat": qat_fixed, "losses": losses,
            "infos": {k: flatbuffer.load_model_info(b) for k, b in blobs.items()}}


# ----------------------------------------------------------------------------- QAT (Keras)


def test_rebuild_fixed_sets_shape_and_overrides_keep_outputs(tiny, images):
    fixed = rebuild_fixed(tiny, SIZE, SIZE, dcn_index_math="float")
    assert tuple(fixed.inputs[0].shape) == (1, SIZE, SIZE, 3)
    assert fixed.get_layer("dcn").index_math == "float" and tiny.get_layer("dcn").index_math == "int"
    np.testing.assert_allclose(fixed(images[0]).numpy(), tiny(images[0]).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="no_such_key"):
        rebuild_fixed(tiny, SIZE, SIZE, no_such_key=1)


def test_quantize_aware_wraps_every_layer_and_a_qat_step_trains_nested_kernels(tiny, images):
    qat = quantize_aware(rebuild_fixed(tiny, SIZE, SIZE, batch_size=None))
    wrapper = tfmot.quantization.keras.QuantizeWrapper
    kinds = {type(l).__name__ for l in qat.layers if not isinstance(l, (wrapper, keras.layers.InputLayer))}
    assert kinds == {"QuantizeLayer"}  # every other layer is wrapped
    dcn = qat.get_layer("quant_dcn")
    assert isinstance(dcn.quantize_config, DeformableConv2DQuantizeConfig)
    names = {w.name.split("/")[-1] for w in dcn.weights}
    assert {"kernel_min:0", "offset_conv_kernel_min:0", "output_min:0"} <= names

    x = np.concatenate(images[:2])
    float_out = tiny(x).numpy()
    calibrate_ranges(qat, [x])
    # Calibrated fake-quant model stays close to float (ranges [-6, 6] would be far off).
    assert psnr_between(float_out, qat(x, training=False).numpy()) > 30

    variables = qat.trainable_variables
    assert len(variables) == len(tiny.trainable_variables)  # nested kernels counted once
    before = [v.numpy().copy() for v in variables]
    qat.compile(keras.optimizers.Adam(1e-3), "mae")
    loss = qat.train_on_batch(x, x)
    assert np.isfinite(loss)
    unchanged = [v.name for v, b in zip(variables, before) if np.array_equal(b, v.numpy())]
    assert unchanged == []  # every weight trains, the nested conv kernels included


def test_qat_weights_save_and_load(exports, tiny, images, tmp_path):
    qat = exports["qat"]  # fine-tuned and calibrated: every variable differs from a fresh build
    ref = qat(images[1], training=False).numpy()
    path = str(tmp_path / "qat.weights.h5")
    qat.save_weights(path)
    again = quantize_aware(rebuild_fixed(tiny, SIZE, SIZE, index_math="int"))
    assert any(not np.array_equal(a, b) for a, b in zip(qat.get_weights(), again.get_weights()))
    again.load_weights(path)
    for a, b in zip(qat.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again(images[1], training=False).numpy(), ref)


# ----------------------------------------------------------------------------- TFLite


def test_all_exports_are_builtin_only(exports):
    for name, info in exports["infos"].items():
        assert len(exports["blobs"][name]) > 1000, name
        assert info.custom_ops() == [] and info.flex_ops() == [], name
        assert not info.has_dynamic_inputs and tuple(info.inputs[0].shape) == (1, SIZE, SIZE, 3)


def test_int8_graph_is_integer_except_the_dcn_floor(exports):
    """What the report states: all tensors int8/int32 except floor(offset) of the DCN."""
    for name, float_io in (("int8", False), ("int8_ptq_float_io", True)):
        info = exports["infos"][name]
        islands = float_islands(info, float_io=float_io)
        summary = island_summary(islands)
        assert set(summary) == ISLAND_OPS, summary
        # two DCN applications x (dy, dx): one DEQUANTIZE -> FLOOR -> (QUANTIZE, CAST) each
        assert summary == {"CAST": 4, "DEQUANTIZE": 4, "FLOOR": 4, "QUANTIZE": 4}
        assert all(i["reason"] for i in islands)
        heavy = {"CONV_2D", "TRANSPOSE_CONV", "MUL", "ADD", "GATHER", "MEAN", "LOGISTIC"}
        for op in info.ops:
            if op.name in heavy:
                assert "float32" not in op.input_dtypes + op.output_dtypes, op.describe()
    io = exports["infos"]["int8"]
    assert io.inputs[0].dtype == "int8" and io.outputs[0].dtype == "int8"
    fio = exports["infos"]["int8_ptq_float_io"]
    assert fio.inputs[0].dtype == "float32" and fio.outputs[0].dtype == "float32"


def test_parity_with_keras(exports, images):
    runners = {k: TFLiteModel(b) for k, b in exports["blobs"].items()}
    # XNNPACK (the default CPU path) takes every export but the post-training one: on this tiny
    # random net a dead-ReLU bottleneck calibrates to an int8 scale ~1e-8 there, which XNNPACK
    # refuses (the runner then uses the builtin kernels); calibrate_ranges guards QAT from it.
    assert all(r.uses_xnnpack for k, r in runners.items() if k != "int8_ptq_float_io")
    for x in images:
        ref = exports["float_model"](x, training=False).numpy()
        ref_qat = exports["qat"](x, training=False).numpy()
        assert psnr_between(ref, runners["float32"](x)) > 50
        assert psnr_between(ref, runners["float16"](x)) > 40
        # int8 reproduces the QAT Keras model it came from, and stays near float.
        assert psnr_between(ref_qat, runners["int8"](x)) > 30
        assert psnr_between(ref, runners["int8"](x)) > 28
        assert psnr_between(ref, runners["int8_ptq_float_io"](x)) > 28
        assert runners["int8"](x).shape == x.shape


def test_gpu_verdicts(exports):
    for name in ("float32", "float16"):
        report = gpu_compat.check_gpu_compatibility(exports["infos"][name])
        assert report.compatible, report.format()
    int8 = gpu_compat.check_gpu_compatibility(exports["infos"]["int8"])
    assert not int8.compatible  # int32 index arithmetic (index_math="int") stays on the CPU
    assert any("int32" in r for op in int8.incompatible_ops for r in op.reasons)


def test_fused_transpose_conv_relu_is_split_for_the_gpu(exports, images):
    """The converter fuses ReLU into TRANSPOSE_CONV (v4, rejected by the GPU delegate); the
    rewrite splits it back, exactly."""
    fused = exports["infos"]["float32_fused"]
    assert {op.version for op in fused.ops if op.name == "TRANSPOSE_CONV"} == {4}
    report = gpu_compat.check_gpu_compatibility(fused)
    assert report.incompatible_op_names == ["TRANSPOSE_CONV"]
    split, n = unfuse_transpose_conv_activation(exports["blobs"]["float32_fused"])
    assert n == 2 and unfuse_transpose_conv_activation(split)[1] == 0
    info = flatbuffer.load_model_info(split)
    assert {op.version for op in info.ops if op.name == "TRANSPOSE_CONV"} == {3}
    assert info.op_histogram()["RELU"] == fused.op_histogram()["RELU"] + 2
    assert gpu_compat.check_gpu_compatibility(info).compatible
    for x in images:
        np.testing.assert_array_equal(TFLiteModel(split)(x), TFLiteModel(exports["blobs"]["float32_fused"])(x))


def test_convert_cli_float_exports_and_report(tiny, tmp_path):
    """edge/convert.py without real images: float32 and float16 only, with the report. The fast
    counterpart of the full run below (QAT, int8, evaluation: about 35 s, under -m slow)."""
    ckpt = tmp_path / "tiny.keras"
    tiny.save(str(ckpt))
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "edge" / "convert.py"), "--model", str(ckpt), "--out", str(out),
           "--size", "30", "42"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "int8 skipped" in proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert "GPU delegate" in (out / "report.md").read_text()
    assert report["settings"]["int8_method"] == "skipped"
    [export] = report["exports"]
    assert export["size"] == [30, 42]  # not a multiple of 4: pad + crop
    assert set(export["models"]) == {"float32", "float16"}
    for m in export["models"].values():
        assert (out / m["file"]).stat().st_size == m["bytes"] > 0
        assert m["op_histogram"]["CONV_2D"] > 0 and m["non_builtin_ops"] == []
        assert m["gpu"]["compatible"] and m["index_math"] == "float"
    assert export["models"]["float32"]["rewrites"]["transpose_conv_activations_unfused"] == 2
    assert report["checks"]["no non-builtin (Flex/custom) ops"]


@pytest.mark.slow  # QAT, three conversions and an evaluation in a subprocess (about 35 s)
def test_convert_cli_writes_report(tiny, data_dir, tmp_path):
    ckpt = tmp_path / "tiny.keras"
    tiny.save(str(ckpt))
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "edge" / "convert.py"), "--model", str(ckpt), "--out", str(out),
           "--size", "30", "42", "--qat-data", str(data_dir), "--qat-steps", "2", "--qat-crop", "32",
           "--qat-batch", "2", "--eval-dir", str(data_dir), "--eval-limit", "2", "--calib-count", "4",
           "--parity-images", "2"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert "GPU delegate" in md and "float islands" in md and "PSNR" in md
    assert report["qat"]["steps"] == 2 and len(report["qat"]["losses"]) == 2
    assert report["settings"]["int8_method"] == "QAT"
    assert [e["size"] for e in report["exports"]] == [[30, 42]]  # not a multiple of 4: pad + crop
    for export in report["exports"]:
        models = export["models"]
        assert set(models) == {"float32", "float16", "int8"}
        for mode, m in models.items():
            assert (out / m["file"]).stat().st_size == m["bytes"] > 0
            assert m["op_histogram"]["CONV_2D"] > 0
            assert m["non_builtin_ops"] == []
            assert isinstance(m["gpu"]["compatible"], bool)
            assert m["parity"]["vs_keras_float"]["n"] == 2
        assert models["float32"]["gpu"]["compatible"] and models["float32"]["index_math"] == "float"
        assert models["float32"]["rewrites"]["transpose_conv_activations_unfused"] == 2
        assert models["int8"]["xnnpack"]["ok"] and models["int8"]["method"] == "qat"
        assert models["int8"]["index_math"] == "int" and models["int8"]["gpu"]["incompatible_ops"]
        assert models["float32"]["parity"]["vs_keras_float"]["min"] > 50
        assert {i["op"] for i in models["int8"]["float_islands"]} == ISLAND_OPS
        assert all(i["reason"] for i in models["int8"]["float_islands"])
        ev = export["eval"]
        assert ev["n"] >= 1 and {"keras float", "tflite float32", "tflite int8", "keras qat"} <= set(ev["results"])
        assert "psnr_drop_db" in ev["int8_vs_float"]
        assert 0 < ev["results"]["tflite int8"]["ssim"]["mean"] <= 1
    assert report["checks"]["no non-builtin (Flex/custom) ops"]


def test_qat_distils_the_float_model_by_default(exports, tiny, data_dir):
    """target="float": the QAT loss is the int8-simulation error w.r.t. the float model, which is
    far below the error w.r.t. the ground truth of an untrained net; unknown targets are refused.
    The default-target run is the module's (``exports``): its first loss is taken before any
    update, on the same calibration and first batch as the target="gt" run below."""
    pairs = find_pairs(str(data_dir))
    kwargs = dict(steps=1, crop=SIZE, batch_size=2, lr=0.0, calib_batches=2, log=None, index_math="int")
    to_float = exports["losses"]
    _, to_gt = qat_finetune(tiny, pairs, target="gt", **kwargs)
    assert to_float[0] < 0.25 * to_gt[0]
    with pytest.raises(ValueError, match="target"):
        qat_finetune(tiny, pairs, target="teacher", **kwargs)
