"""``edge/convert.py``: a float checkpoint -> TFLite float32 / float16 / int8, checked and reported.

For every fixed batch-1 input size it writes ``<NAME>_<H>x<W>_{float32,float16,int8}.tflite``
(NAME: the bundled network's name or the checkpoint's file name without ``.keras``)
and, for the whole run, ``report.json`` and ``report.md``: file sizes, op histograms,
non-builtin (Flex/custom) ops, the GPU-delegate verdict of each file (``gpu_compat``),
Keras-vs-TFLite parity (PSNR on real images, run through ``interpreter.TFLiteModel``),
PSNR/SSIM against ground truth on --eval-dir, and the float islands of the int8 graph.

Choices (docs/deployment.md):
* float32/float16 are exported with the DCN's ``index_math="float"`` (the GPU delegate takes
  it), int8 with ``"int"`` (int32 indices are left alone by full-integer quantization; float
  indices would be quantized and scrambled). Same weights; both verdicts are reported.
* float32/float16: ReLUs the converter fuses into TRANSPOSE_CONV (version 4, which the GPU
  delegate rejects) are split back into RELU ops (``gpu_rewrite``; exact).
* int8 is full integer (``TFLITE_BUILTINS_INT8``) with a representative dataset of random
  crops of real images (--calib-dir, else the hazy images of --qat-data, else of --eval-dir);
  without real images int8 is skipped, never calibrated on noise.
* With --qat-data the int8 model comes from a QAT fine-tune (``qat_finetune``); without it
  from post-training quantization of the float checkpoint. If --eval-dir is the QAT folder,
  30% of its scenes are held out of QAT and used for evaluation.

``convert_checkpoint(args)`` takes the options ``edge/convert.py`` parses (its ``parse_args``).
Imports TensorFlow: configure ``keras_dehaze.quiet`` before importing this module.
"""

import datetime
import importlib.metadata
import os
import time

import numpy as np

import keras_dehaze.layers  # noqa: F401  (registers the custom layers for load_model)
from keras_dehaze.atomic import atomic_write
from keras_dehaze.backend import keras, tf
from keras_dehaze.data import find_pairs, list_images, read_image, split_by_scene
from keras_dehaze.edge import flatbuffer, gpu_compat
from keras_dehaze.edge.conversion_report import write_report
from keras_dehaze.edge.export import center_crop, convert, random_crops
from keras_dehaze.edge.float_islands import float_islands, integer_dtypes, island_summary
from keras_dehaze.edge.gpu_rewrite import unfuse_transpose_conv_activation
from keras_dehaze.edge.interpreter import TFLiteModel
from keras_dehaze.edge.quantization import rebuild_fixed
from keras_dehaze.metrics import CONVENTION, psnr, ssim

# Stated parity tolerances: minimum PSNR (dB) of each TFLite output against Keras.
PARITY_MIN_DB = {"float32": 50.0, "float16": 40.0}


def psnr_between(a, b, data_range=1.0):
    """PSNR (dB) of b against a over the whole arrays; inf when identical."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range**2 / mse)


def summarize(values):
    """{mean, min, max, n} of finite-or-inf numbers (mean over finite values, inf if all inf)."""
    values = [float(v) for v in values]
    if not values:
        return {"n": 0}
    finite = [v for v in values if np.isfinite(v)]
    mean = float(np.mean(finite)) if finite else float("inf")
    return {"mean": mean, "min": min(values), "max": max(values), "n": len(values)}


def load_model(args):
    """The float Keras model: a bundled network (keras_dehaze.pretrained) or a .keras file."""
    if args.bundled:
        from keras_dehaze.pretrained import load_pretrained

        return load_pretrained(args.bundled)
    from keras_dehaze.inference import ModelLoadError, check_keras_archive

    try:
        check_keras_archive(args.model)
    except ModelLoadError as e:
        raise SystemExit(f"error: {e}") from None
    return keras.models.load_model(args.model, compile=False)


def log(msg):
    print(msg, flush=True)


def _spread(items, limit):
    """``limit`` evenly spaced items (all if limit <= 0): covers every scene of sorted pairs."""
    if limit <= 0 or len(items) <= limit:
        return list(items)
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))]


def _versions():
    out = {}
    for dist in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _has_key(model, key):
    return any(key in layer.get_config() for layer in model.layers)


def _data(args, report):
    """Resolves QAT pairs, eval pairs, calibration and parity images (and the hold-out)."""
    qat_pairs = [pair for folder in args.qat_data for pair in find_pairs(folder)]
    eval_pairs = find_pairs(args.eval_dir) if args.eval_dir else []
    same = [f for f in args.qat_data if args.eval_dir and os.path.realpath(f) == os.path.realpath(args.eval_dir)]
    if same and len(args.qat_data) > 1:
        raise SystemExit(f"--eval-dir {args.eval_dir} is one of several --qat-data folders: give a separate "
                         "evaluation folder (scene hold-out works with a single QAT folder only)")
    if qat_pairs and eval_pairs and same:
        try:
            qat_pairs, eval_pairs = split_by_scene(qat_pairs, val_fraction=0.3, seed=args.seed)
            scenes = sorted({p.scene for p in eval_pairs})
            report["notes"].append(f"--eval-dir is the QAT folder: scenes {scenes} were held out of QAT "
                                   "and are the only ones evaluated.")
        except Exception as exc:  # one scene only: cannot hold out
            report["notes"].append(f"--eval-dir is the QAT folder and no scene could be held out ({exc}); "
                                   "evaluation pairs were also QAT training pairs.")
    eval_pairs = _spread(eval_pairs, args.eval_limit)
    if args.calib_dir:
        calib, source = list_images(args.calib_dir), f"{args.calib_dir} (images)"
    elif qat_pairs:
        calib, source = [p.hazy for p in qat_pairs], f"{', '.join(args.qat_data)} (hazy images of the QAT pairs)"
    elif eval_pairs:
        calib, source = [p.hazy for p in eval_pairs], f"{args.eval_dir} (hazy images)"
    else:
        calib, source = [], None
    parity = [p.hazy for p in eval_pairs] or _spread(calib, args.parity_images)
    return qat_pairs, eval_pairs, calib, source, parity[: args.parity_images]


def _qat(args, model, pairs, report):
    from keras_dehaze.edge.qat_finetune import qat_finetune

    overrides = {"index_math": "int"} if _has_key(model, "index_math") else {}
    t0 = time.time()
    qat, losses = qat_finetune(model, pairs, args.qat_steps, crop=args.qat_crop, batch_size=args.qat_batch,
                               lr=args.qat_lr, seed=args.seed, log=log, target=args.qat_target, **overrides)
    report["qat"] = {
        "data": args.qat_data, "target": args.qat_target, "pairs": len(pairs), "steps": args.qat_steps,
        "crop": args.qat_crop,
        "batch_size": args.qat_batch, "lr": args.qat_lr, "loss_first": losses[0] if losses else None,
        "loss_last10": float(np.mean(losses[-10:])) if losses else None, "losses": losses,
        "seconds": time.time() - t0,
    }
    return qat, overrides


def _analyze(path, index_math, int8=False, float_io=False):
    info = flatbuffer.load_model_info(path)
    gpu = gpu_compat.check_gpu_compatibility(info).to_dict()
    entry = {
        "file": os.path.basename(path),
        "bytes": os.path.getsize(path),
        "index_math": index_math,
        "op_histogram": dict(sorted(info.op_histogram().items())),
        "non_builtin_ops": sorted({op.name for op in info.custom_ops()}),
        "flex_ops": sorted({op.name for op in info.flex_ops()}),
        "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in info.inputs],
        "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in info.outputs],
        "gpu": {k: gpu[k] for k in ("compatible", "incompatible_op_names", "model_issues", "notes",
                                    "n_ops", "n_ops_supported", "rules_version")},
    }
    entry["gpu"]["incompatible_ops"] = [
        {"name": op["name"], "index": op["index"], "signature": op["signature"], "reasons": list(op["reasons"])}
        for op in gpu["incompatible_ops"]
    ]
    if int8:
        islands = float_islands(info, float_io=float_io)
        entry.update(float_islands=islands, float_island_summary=island_summary(islands),
                     tensor_dtypes=integer_dtypes(info))
    return entry


def _inference(model):
    """A traced ``model(x, training=False)`` (a named function: autograph cannot parse lambdas)."""

    @tf.function
    def run(x):
        return model(x, training=False)

    return run


def _export_size(args, model, size, qat, qat_overrides, calib, parity_paths, eval_pairs, report):
    h, w = size
    has_dcn = _has_key(model, "index_math")
    float_over = {"index_math": "float"} if has_dcn else {}
    int_over = {"index_math": "int"} if has_dcn else {}
    float_model = rebuild_fixed(model, h, w, batch_size=1, **float_over)
    stem = os.path.join(args.out, f"{args.name}_{h}x{w}")  # documented in OUTPUT_NAMES
    models, runners, keras_fns = {}, {}, {"keras float": _inference(float_model)}

    for mode in ("float32", "float16"):
        t0 = time.time()
        path = f"{stem}_{mode}.tflite"
        blob, split = unfuse_transpose_conv_activation(convert(float_model, mode, gpu_rewrite=False))
        atomic_write(path, blob)
        models[mode] = _analyze(path, float_over.get("index_math", "n/a"))
        models[mode]["rewrites"] = {"transpose_conv_activations_unfused": split}
        models[mode]["convert_seconds"] = time.time() - t0
        log(f"{h}x{w} {mode}: {models[mode]['bytes'] / 1e6:.3f} MB, GPU "
            f"{'COMPATIBLE' if models[mode]['gpu']['compatible'] else 'not compatible'}")

    if calib:
        t0 = time.time()
        representative = random_crops(calib, (h, w), args.calib_count, seed=args.seed)
        if qat is not None:
            from keras_dehaze.edge.qat_finetune import export_copy

            source = export_copy(qat, model, h, w, **qat_overrides)
            keras_fns["keras qat"] = _inference(source)
        else:
            source = rebuild_fixed(model, h, w, batch_size=1, **int_over)
        path = f"{stem}_int8.tflite"
        atomic_write(path, convert(source, "int8", representative=representative, int8_io=not args.int8_float_io))
        models["int8"] = _analyze(path, int_over.get("index_math", "n/a"), int8=True, float_io=args.int8_float_io)
        models["int8"]["convert_seconds"] = time.time() - t0
        models["int8"]["method"] = "qat" if qat is not None else "ptq"
        log(f"{h}x{w} int8 ({models['int8']['method']}): {models['int8']['bytes'] / 1e6:.3f} MB, "
            f"float islands {models['int8']['float_island_summary'] or 'none'}")

    for mode in models:
        runners[mode] = TFLiteModel(f"{stem}_{mode}.tflite", threads=args.threads)
        models[mode]["xnnpack"] = {"ok": runners[mode].uses_xnnpack, "error": runners[mode].xnnpack_error}
        if not runners[mode].uses_xnnpack:
            log(f"{h}x{w} {mode}: XNNPACK refused the model ({runners[mode].xnnpack_error}); "
                "measured with the builtin kernels")

    # Parity: each TFLite output against the Keras float output (and int8 against its QAT source).
    par = {mode: {"vs_keras_float": []} for mode in models}
    if "keras qat" in keras_fns:
        par["int8"]["vs_keras_qat"] = []
    for p in parity_paths:
        x = center_crop(read_image(p), h, w)[None].astype(np.float32)
        ref = keras_fns["keras float"](x).numpy()
        ref_qat = keras_fns["keras qat"](x).numpy() if "keras qat" in keras_fns else None
        for mode, run in runners.items():
            out = run(x)
            par[mode]["vs_keras_float"].append(psnr_between(ref, out))
            if mode == "int8" and ref_qat is not None:
                par[mode]["vs_keras_qat"].append(psnr_between(ref_qat, out))
    for mode in models:
        models[mode]["parity"] = {k: {**summarize(v), "per_image": v} for k, v in par[mode].items()}
        models[mode]["parity"]["images"] = [os.path.basename(p) for p in parity_paths]

    export = {"size": [h, w], "models": models}
    if eval_pairs:
        export["eval"] = _evaluate(args, eval_pairs, (h, w), keras_fns, runners)
    return export


def _evaluate(args, pairs, size, keras_fns, runners):
    h, w = size
    outputs = {"hazy input": None, **{k: f for k, f in keras_fns.items()},
               **{f"tflite {m}": r for m, r in runners.items()}}
    scores = {name: {"psnr": [], "ssim": []} for name in outputs}
    for pair in pairs:
        hazy = center_crop(read_image(pair.hazy), h, w).astype(np.float32)
        clear = center_crop(read_image(pair.clear), h, w).astype(np.float32)
        for name, fn in outputs.items():
            if fn is None:
                out = hazy
            elif name.startswith("keras"):
                out = fn(hazy[None]).numpy()[0]
            else:
                out = fn(hazy)
            out = np.clip(out, 0.0, 1.0)
            scores[name]["psnr"].append(psnr(out, clear))
            scores[name]["ssim"].append(ssim(out, clear))
    results = {name: {k: {**summarize(v), "per_image": v} for k, v in s.items()} for name, s in scores.items()}
    ev = {"dir": args.eval_dir, "n": len(pairs), "crop": f"center {h}x{w} crop of hazy and clear",
          "pairs": [os.path.basename(p.hazy) for p in pairs], "results": results}
    if "tflite int8" in results:
        drop = results["keras float"]["psnr"]["mean"] - results["tflite int8"]["psnr"]["mean"]
        ev["int8_vs_float"] = {
            "psnr_drop_db": drop,
            "ssim_drop": results["keras float"]["ssim"]["mean"] - results["tflite int8"]["ssim"]["mean"],
            "margin_db": args.int8_margin_db,
            "within_margin": bool(drop <= args.int8_margin_db),
        }
        if "keras qat" in results:  # QAT changes the weights: also compare with the model converted
            ev["int8_vs_float"]["psnr_drop_vs_keras_qat_db"] = (
                results["keras qat"]["psnr"]["mean"] - results["tflite int8"]["psnr"]["mean"])
    return ev


def _checks(report):
    checks = {}
    exports = report["exports"]
    models = [m for e in exports for m in e["models"].values()]
    checks["no non-builtin (Flex/custom) ops"] = all(not m["non_builtin_ops"] for m in models)
    for mode, limit in PARITY_MIN_DB.items():
        mins = [e["models"][mode]["parity"]["vs_keras_float"].get("min") for e in exports if mode in e["models"]]
        if mins and all(v is not None for v in mins):
            checks[f"{mode} parity: min PSNR vs Keras >= {limit:g} dB"] = all(v >= limit for v in mins)
    checks["every model loads with the XNNPACK CPU delegate"] = all(m["xnnpack"]["ok"] for m in models)
    for mode in ("float32", "float16"):
        checks[f"{mode} GPU-delegate compatible"] = all(e["models"][mode]["gpu"]["compatible"] for e in exports)
    margins = [e["eval"]["int8_vs_float"] for e in exports if "int8_vs_float" in e.get("eval", {})]
    if margins:
        limit = margins[0]["margin_db"]
        checks[f"int8 PSNR vs GT within {limit:g} dB of the float checkpoint"] = all(
            m["within_margin"] for m in margins)
        if all("psnr_drop_vs_keras_qat_db" in m for m in margins):
            checks[f"int8 PSNR vs GT within {limit:g} dB of its Keras QAT model"] = all(
                m["psnr_drop_vs_keras_qat_db"] <= limit for m in margins)
    return checks


def convert_checkpoint(args):
    """Runs the whole conversion described by ``args`` (edge/convert.py's options); returns 0."""
    model = load_model(args)
    os.makedirs(args.out, exist_ok=True)  # once the model loaded
    report = {
        "tool": "edge/convert.py", "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": _versions(), "metric_convention": CONVENTION, "notes": [],
        "model": {"path": args.bundled and f"bundled:{args.bundled}" or os.path.abspath(args.model),
                  "name": model.name, "file_stem": args.name, "params": int(model.count_params())},
        "args": {k: v for k, v in vars(args).items()},
    }
    qat_pairs, eval_pairs, calib, calib_source, parity_paths = _data(args, report)
    qat, qat_overrides = (None, {})
    if qat_pairs:
        qat, qat_overrides = _qat(args, model, qat_pairs, report)
    if not calib:
        report["notes"].append("int8 skipped: no real images for the representative dataset "
                               "(give --calib-dir, --qat-data or --eval-dir).")
        log("warning: " + report["notes"][-1])
    report["settings"] = {
        "sizes": [list(s) for s in args.size],
        "int8_method": ("QAT" if qat is not None else "post-training quantization") if calib else "skipped",
        "int8_io": "float32" if args.int8_float_io else "int8",
        "calibration": f"{args.calib_count} random crops from {calib_source}" if calib else "none",
        "parity_images": [os.path.basename(p) for p in parity_paths],
        "parity_min_db": PARITY_MIN_DB,
    }
    if _has_key(model, "index_math"):
        report["notes"].append("float32/float16 use DCN index_math='float' (GPU-delegate friendly), int8 uses "
                               "'int' (exact under full-integer quantization); same weights.")
        report["notes"].append("GPU delegate with fp16 precision: float index arithmetic is exact only below "
                               "2048, and the DCN's flattened indices reach (H/4+2)*(W/4+2) (4356 at 256x256): "
                               "run the float models on the GPU with full fp32 precision "
                               "(is_precision_loss_allowed = false).")
    report["exports"] = []
    for size in args.size:
        report["exports"].append(_export_size(args, model, size, qat, qat_overrides, calib, parity_paths,
                                               eval_pairs, report))
    report["checks"] = _checks(report)
    json_path, md_path = write_report(report, args.out)
    log(f"wrote {json_path} and {md_path}")
    for name, ok in report["checks"].items():
        log(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0
