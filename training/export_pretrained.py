"""Package a finished training run as a bundled network (keras_dehaze/weights/<name>.*).

    python training/export_pretrained.py runs/aecrnet_default --name aecrnet_default \
        [--tflite edge_out/best_256x256_int8.tflite]

Writes float16 weights (.npz) and a .json record of the data, schedule, wall time and
validation figures taken from the run's config.yaml, summary.json, best.json and log.csv.
"""

import argparse
import csv
import json
import os
import shutil

import yaml

from keras_dehaze import pretrained
from keras_dehaze.inference import load_keras_model


def _read(path, loader):
    with open(path) as f:
        return loader(f)


def _shipped_validation(checkpoint, best, log):
    """Validation figures of the shipped file: best.keras -> its epoch; latest.keras -> the last
    epoch; teacher.keras (Colabator's EMA teacher) -> the last epoch's val_teacher_* columns."""
    if checkpoint == "best.keras":
        row, epoch = log[best["epoch"] - 1], best["epoch"]
        return {"epoch": epoch, "val_psnr": best["value"], "val_ssim": float(row["val_ssim"])}
    if checkpoint not in ("latest.keras", "teacher.keras"):
        raise SystemExit(f"no validation figures are logged for {checkpoint}: ship best.keras, latest.keras "
                         "or teacher.keras")
    prefix = "val_teacher_" if checkpoint == "teacher.keras" else "val_"
    row = log[-1]
    if f"{prefix}psnr" not in row:
        raise SystemExit(f"{checkpoint}: the run's log.csv has no {prefix}psnr column")
    return {"checkpoint": checkpoint, "epoch": len(log), "val_psnr": float(row[f"{prefix}psnr"]),
            "val_ssim": float(row[f"{prefix}ssim"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--name", default=pretrained.AECRNET)
    parser.add_argument("--checkpoint", default="best.keras", help="file in run_dir to ship")
    parser.add_argument("--tflite", help="an int8 .tflite of the same weights to ship beside them")
    parser.add_argument("--config", default="training/configs/aecrnet_default.yaml",
                        help="the committed config(s) that reproduce the run, recorded as given")
    parser.add_argument("--note", default="", help="free text kept in the record (e.g. a schedule change)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored weight precision")
    parser.add_argument("--derived-from", default=None,
                        help="preset the run started from; its licence, licence file and attribution are carried over")
    args = parser.parse_args(argv)

    config = _read(os.path.join(args.run_dir, "config.yaml"), yaml.safe_load)
    summary = _read(os.path.join(args.run_dir, "summary.json"), json.load)
    best = _read(os.path.join(args.run_dir, "best.json"), json.load)
    log = _read(os.path.join(args.run_dir, "log.csv"), lambda f: list(csv.DictReader(f)))
    model = load_keras_model(os.path.join(args.run_dir, args.checkpoint))
    record = {
        "trained_on": config["data"]["train"],
        "real_hazy_without_gt": config.get("colabator", {}).get("real") if config["trainer"]["name"] == "colabator" else None,
        "validation_scenes_held_out": config["data"]["val_scenes"],
        "resynthesis": {k: config["data"][k] for k in config["data"] if k.startswith("synthetic_")},
        "trainer": config["trainer"],
        "optimizer": config["optim"],
        "crop_size": config["data"]["crop_size"],
        "batch_size": config["data"]["batch_size"],
        "steps": summary.get("steps"),
        "wall_time_s": round(summary.get("wall_time_s", 0.0)),
        "hardware": "2-core x86_64 CPU (shared with other jobs)",
        "validation": {
            "hazy_input": summary.get("identity"),
            "before_this_run": summary.get("before"),  # untrained, or the checkpoint a fine-tune started from
            "shipped_checkpoint": _shipped_validation(args.checkpoint, best, log),
            "metric_convention": "PSNR/SSIM on RGB in [0,1], whole image, no border crop",
        },
        "config": args.config,
        "note": args.note,
    }
    if args.derived_from:  # fine-tuned third-party weights keep their licence and attribution
        base = pretrained.metadata(args.derived_from)
        record["derived_from"] = args.derived_from
        record.update({k: base[k] for k in ("license", "license_file", "attribution") if k in base})
    args_out = {k: v for k, v in config["model"]["args"].items() if k != "batchnorm_trainable"}  # training-only
    meta = pretrained.export_pretrained(model, args.name, config["model"]["name"], args_out, record, dtype=args.dtype)
    if args.tflite:
        shutil.copy(args.tflite, os.path.join(pretrained.WEIGHTS_DIR, f"{args.name}_int8.tflite"))
        meta = pretrained.update_metadata(args.name, int8_tflite=f"{args.name}_int8.tflite")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
