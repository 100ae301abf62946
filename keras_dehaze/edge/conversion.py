"""Checkpoint -> TFLite float32 / float16 / int8, with optional QAT fine-tuning and a report.

    python edge/convert.py --model CKPT.keras|BUNDLED_NAME --out OUTDIR [--size 256 256 [--size 512 384]]
        [--qat-data PAIRED_DIR --qat-steps N] [--calib-dir DIR] [--eval-dir PAIRED_DIR]
        [--int8-float-io]

For every fixed batch-1 input size it writes ``<NAME>_<H>x<W>_{float32,float16,int8}.tflite``
(NAME: the bundled network's name or the checkpoint's file name without ``.keras``)
and, for the whole run, ``report.json`` and ``report.md``: file sizes, op histograms,
non-builtin (Flex/custom) ops, the GPU-delegate verdict of each file (edge/gpu_compat.py),
Keras-vs-TFLite parity (PSNR on real images), PSNR/SSIM against ground truth on --eval-dir,
and the float islands of the int8 graph.

Choices (docs/deployment.md):
* float32/float16 are exported with the DCN's ``index_math="float"`` (the GPU delegate takes
  it), int8 with ``"int"`` (int32 indices are left alone by full-integer quantization; float
  indices would be quantized and scrambled). Same weights; both verdicts are reported.
* float32/float16: ReLUs the converter fuses into TRANSPOSE_CONV (version 4, which the GPU
  delegate rejects) are split back into RELU ops (edge/tflite_rewrite.py; exact).
* int8 is full integer (``TFLITE_BUILTINS_INT8``) with a representative dataset of random
  crops of real images (--calib-dir, else the hazy images of --qat-data, else of --eval-dir);
  without real images int8 is skipped, never calibrated on noise.
* With --qat-data the int8 model comes from a QAT fine-tune (edge/qat_finetune.py); without it
  from post-training quantization of the float checkpoint. If --eval-dir is the QAT folder,
  30% of its scenes are held out of QAT and used for evaluation.
"""

import argparse
import datetime
import importlib.metadata
import os
import sys
import time

import numpy as np

EDGE_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, EDGE_DIR)
sys.path.insert(1, os.path.dirname(EDGE_DIR))  # the repository (keras_dehaze) when run as a script

# TensorFlow and the converter modules are imported in _import_heavy(), after the arguments are
# parsed: `convert.py --help` and argument errors answer at once.
keras = tf = None


def _import_heavy(verbose=False):
    global keras, tf, gpu_compat, tflite_model, float_islands, integer_dtypes, island_summary
    global TFLiteRunner, psnr_between, summarize, write_report, center_crop, convert, random_crops
    global unfuse_transpose_conv_activation, find_pairs, list_images, read_image, split_by_scene
    global CONVENTION, psnr, ssim, rebuild_fixed
    from keras_dehaze import quiet

    quiet.configure(verbose)
    tf, keras = quiet.import_tensorflow()  # sets TF_USE_LEGACY_KERAS first

    import keras_dehaze.layers  # noqa: F401  (registers the custom layers for load_model)
    from keras_dehaze.data import find_pairs, list_images, read_image, split_by_scene
    from keras_dehaze.metrics import CONVENTION, psnr, ssim
    from keras_dehaze.quantization import rebuild_fixed

    import gpu_compat
    import tflite_model
    from float_islands import float_islands, integer_dtypes, island_summary
    from parity import TFLiteRunner, psnr_between, summarize
    from report import write_report
    from tflite_export import center_crop, convert, random_crops
    from tflite_rewrite import unfuse_transpose_conv_activation


# Stated parity tolerances: minimum PSNR (dB) of each TFLite output against Keras.
PARITY_MIN_DB = {"float32": 50.0, "float16": 40.0}


OUTPUT_NAMES = """output files (in --out):
  <NAME>_<H>x<W>_float32.tflite   float32, one per --size
  <NAME>_<H>x<W>_float16.tflite   float16 weights
  <NAME>_<H>x<W>_int8.tflite      full-integer int8 (only with real images: --calib-dir, --qat-data or --eval-dir)
  report.json, report.md          sizes, op histograms, GPU-delegate verdicts, parity, accuracy
NAME is the bundled network's name (--model aecrnet_default -> aecrnet_default_256x256_int8.tflite)
or the checkpoint's file name without .keras (--model runs/x/best.keras -> best_256x256_int8.tflite).
"""


def _bundled_names():
    from keras_dehaze import pretrained

    return list(pretrained.available()), pretrained.ALIASES


def parse_args(argv=None):
    bundled, aliases = _bundled_names()
    listed = ", ".join(bundled) + (f" ({', '.join(f'{a} = {t}' for a, t in aliases.items() if t in bundled)})"
                                  if bundled else "")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=OUTPUT_NAMES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help=f"float .keras checkpoint (Functional model) or a bundled network name: {listed or 'none'}")
    p.add_argument("--out", required=True, help="output folder (file names below)")
    p.add_argument("--size", nargs=2, type=int, action="append", metavar=("H", "W"),
                   help="fixed input size (repeatable; default 256 256)")
    p.add_argument("--qat-data", action="append", default=[],
                   help="paired folder for QAT fine-tuning (repeatable: e.g. the training mix)")
    p.add_argument("--qat-target", choices=("float", "gt"), default="float",
                   help="QAT loss target: the float model's output (distillation, default) or the GT")
    p.add_argument("--qat-steps", type=int, default=200,
                   help="QAT fine-tuning optimizer steps (default 200; used with --qat-data)")
    p.add_argument("--qat-crop", type=int, default=64,
                   help="side of the random square crops QAT trains on, in pixels (default 64)")
    p.add_argument("--qat-batch", type=int, default=4, help="QAT batch size (default 4)")
    p.add_argument("--qat-lr", type=float, default=1e-5, help="QAT learning rate (Adam; default 1e-5)")
    p.add_argument("--calib-dir", help="folder of real images for int8 calibration")
    p.add_argument("--calib-count", type=int, default=32, help="representative crops")
    p.add_argument("--eval-dir", help="paired folder: PSNR/SSIM vs ground truth, float vs int8")
    p.add_argument("--eval-limit", type=int, default=20, help="pairs to evaluate, evenly spaced (0 = all)")
    p.add_argument("--parity-images", type=int, default=4,
                   help="images (center crops) on which each TFLite file is compared with the Keras model "
                        "(default 4)")
    p.add_argument("--int8-float-io", action="store_true", help="float32 input/output for the int8 model")
    p.add_argument("--int8-margin-db", type=float, default=1.0,
                   help="stated margin: int8 PSNR vs GT may be at most this far below float")
    p.add_argument("--threads", type=int, default=2,
                   help="TFLite interpreter threads for the parity and accuracy runs (default 2)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed: calibration crops, QAT data order, scene hold-out (default 0)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's log messages (hidden by default)")
    args = p.parse_args(argv)
    args.size = [tuple(s) for s in (args.size or [(256, 256)])]
    name = aliases.get(args.model, args.model)
    args.bundled = name if name in bundled else None
    if args.bundled is None and not os.path.isfile(args.model):
        p.error(f"--model {args.model}: no such .keras file, and not a bundled network name "
                f"({', '.join(bundled) or 'none bundled'})")
    args.name = args.bundled or os.path.splitext(os.path.basename(args.model))[0]
    return args


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
    from qat_finetune import qat_finetune

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
    info = tflite_model.load_model_info(path)
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
        with open(path, "wb") as f:
            f.write(blob)
        models[mode] = _analyze(path, float_over.get("index_math", "n/a"))
        models[mode]["rewrites"] = {"transpose_conv_activations_unfused": split}
        models[mode]["convert_seconds"] = time.time() - t0
        log(f"{h}x{w} {mode}: {models[mode]['bytes'] / 1e6:.3f} MB, GPU "
            f"{'COMPATIBLE' if models[mode]['gpu']['compatible'] else 'not compatible'}")

    if calib:
        t0 = time.time()
        representative = random_crops(calib, (h, w), args.calib_count, seed=args.seed)
        if qat is not None:
            from qat_finetune import export_copy

            source = export_copy(qat, model, h, w, **qat_overrides)
            keras_fns["keras qat"] = _inference(source)
        else:
            source = rebuild_fixed(model, h, w, batch_size=1, **int_over)
        path = f"{stem}_int8.tflite"
        with open(path, "wb") as f:
            f.write(convert(source, "int8", representative=representative, int8_io=not args.int8_float_io))
        models["int8"] = _analyze(path, int_over.get("index_math", "n/a"), int8=True, float_io=args.int8_float_io)
        models["int8"]["convert_seconds"] = time.time() - t0
        models["int8"]["method"] = "qat" if qat is not None else "ptq"
        log(f"{h}x{w} int8 ({models['int8']['method']}): {models['int8']['bytes'] / 1e6:.3f} MB, "
            f"float islands {models['int8']['float_island_summary'] or 'none'}")

    for mode in models:
        runners[mode] = TFLiteRunner(f"{stem}_{mode}.tflite", num_threads=args.threads)
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


def main(argv=None):
    args = parse_args(argv)
    _import_heavy(args.verbose)
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


if __name__ == "__main__":
    sys.exit(main())
