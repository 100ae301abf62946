"""Write the conversion report of ``edge/convert.py`` as ``report.json`` and ``report.md``.

The JSON holds everything (per-image numbers included); the Markdown is a readable summary of
the same dict. No TensorFlow needed.
"""

import json
import math
import os

from keras_dehaze.atomic import atomic_write


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _clean(value):
    """inf/nan -> strings: strict JSON has no Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _fmt(x, digits=2):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if math.isfinite(x) else str(x)
    return str(x)


def _mean(stats, key="mean"):
    return None if not stats else stats.get(key)


def _markdown(report):
    lines = [f"# TFLite conversion report: {report['model']['name']}", ""]
    lines += [f"- checkpoint: `{report['model']['path']}` ({report['model']['params']:,} parameters)",
              f"- created: {report['created']}; " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
              f"- int8: {report['settings']['int8_method']}, {report['settings']['int8_io']} I/O; "
              f"calibration: {report['settings']['calibration']}",
              f"- metrics: {report['metric_convention']}", ""]
    qat = report.get("qat")
    if qat:
        lines += ["## QAT fine-tuning", "",
                  f"{qat['steps']} steps on {qat['pairs']} pairs from `{', '.join(qat['data'])}` "
                  f"(crop {qat['crop']}, batch {qat['batch_size']}, Adam lr {qat['lr']}, "
                  f"L1 to the {'float model output' if qat.get('target') == 'float' else 'ground truth'}); "
                  f"loss first {_fmt(qat['loss_first'], 4)}, mean of last 10 {_fmt(qat['loss_last10'], 4)}; "
                  f"{_fmt(qat['seconds'], 0)} s.", ""]
    for export in report["exports"]:
        h, w = export["size"]
        lines += [f"## {h}x{w} (batch 1)", "",
                  "| model | file | size | ops | non-builtin ops | GPU delegate "
                  "| parity vs Keras float (PSNR dB, mean / min) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for mode, m in export["models"].items():
            gpu = ("COMPATIBLE" if m["gpu"]["compatible"]
                   else "not compatible: " + ", ".join(m["gpu"]["incompatible_op_names"]))
            if m["gpu"]["model_issues"]:
                gpu += "; " + "; ".join(m["gpu"]["model_issues"])
            par = m["parity"]["vs_keras_float"]
            lines.append(f"| {mode} (index_math {m['index_math']}) | `{m['file']}` | {m['bytes'] / 1e6:.3f} MB | "
                         f"{sum(m['op_histogram'].values())} | {', '.join(m['non_builtin_ops']) or 'none'} | {gpu} | "
                         f"{_fmt(_mean(par))} / {_fmt(_mean(par, 'min'))} |")
        lines.append("")
        for mode, m in export["models"].items():
            hist = ", ".join(f"{k} {v}" for k, v in sorted(m["op_histogram"].items()))
            lines.append(f"- {mode} ops: {hist}")
        lines.append("")
        for mode, m in export["models"].items():
            if not m["xnnpack"]["ok"]:
                lines.append(f"- {mode}: the XNNPACK CPU delegate REFUSED this model ({m['xnnpack']['error']}); "
                             "figures were measured with the builtin kernels.")
        int8 = export["models"].get("int8")
        if int8:
            if "vs_keras_qat" in int8["parity"]:
                lines.append(f"- int8 vs the Keras QAT model it was converted from: "
                             f"{_fmt(_mean(int8['parity']['vs_keras_qat']))} dB (mean)")
            lines.append(f"- int8 tensor types (non-constant): {int8['tensor_dtypes']}")
            islands = int8["float_islands"]
            if islands:
                lines.append(f"- int8 float islands ({len(islands)} ops: {int8['float_island_summary']}):")
                seen = set()
                for island in islands:
                    if island["op"] in seen:
                        continue
                    seen.add(island["op"])
                    lines.append(f"  - {island['op']}: {island['reason']} (e.g. `{island['signature']}`)")
            else:
                lines.append("- int8 float islands: none")
            lines.append("")
        for mode, m in export["models"].items():
            for op in _first_per_name(m["gpu"]["incompatible_ops"]):
                lines.append(f"- GPU {mode}: {op['name']}: {'; '.join(op['reasons'])}")
        lines.append("")
        ev = export.get("eval")
        if ev:
            lines += [f"Evaluation on {ev['n']} pairs of `{ev['dir']}` ({ev['crop']}):", "",
                      "| output | PSNR dB | SSIM |", "| --- | --- | --- |"]
            for name, stats in ev["results"].items():
                lines.append(f"| {name} | {_fmt(stats['psnr']['mean'])} | {_fmt(stats['ssim']['mean'], 4)} |")
            drop = ev.get("int8_vs_float")
            if drop:
                lines += ["", f"int8 vs Keras float: PSNR drop {_fmt(drop['psnr_drop_db'], 3)} dB, SSIM drop "
                          f"{_fmt(drop['ssim_drop'], 4)} (stated margin {_fmt(drop['margin_db'], 1)} dB: "
                          f"{'within' if drop['within_margin'] else 'NOT within'})."]
                if "psnr_drop_vs_keras_qat_db" in drop:
                    lines += [f"int8 vs the Keras QAT model it was converted from: PSNR drop "
                              f"{_fmt(drop['psnr_drop_vs_keras_qat_db'], 3)} dB (QAT fine-tuning changed the "
                              "weights, so int8 vs the float checkpoint mixes training and quantization)."]
            lines.append("")
    checks = report.get("checks", {})
    if checks:
        lines += ["## Checks", ""] + [f"- {k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()] + [""]
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)


def _first_per_name(ops):
    seen, out = set(), []
    for op in ops:
        if op["name"] not in seen:
            seen.add(op["name"])
            out.append(op)
    return out


def write_report(report, out_dir):
    """Writes ``report.json`` and ``report.md`` into ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    json_path, md_path = os.path.join(out_dir, "report.json"), os.path.join(out_dir, "report.md")
    atomic_write(json_path, json.dumps(_clean(report), indent=2, default=_json_default))
    atomic_write(md_path, _markdown(report))
    return json_path, md_path


__all__ = ["write_report"]
