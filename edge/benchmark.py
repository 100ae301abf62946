#!/usr/bin/env python3
"""Latency and memory benchmark of ``.tflite`` dehazing models (and optionally the Keras model).

    python edge/benchmark.py MODEL.tflite... [--sizes 256x256 460x620] [--threads 1 2]
        [--warmup 3] [--runs 10] [--keras CKPT.keras] [--json out.json]

Each model x size x thread count runs in a fresh process; what is timed and measured, and the
size modes of the results: keras_dehaze.edge.benchmark.
"""

import argparse
import json
import os
import sys

from keras_dehaze.atomic import atomic_write
from keras_dehaze.edge.benchmark import print_table, run_benchmark
from keras_dehaze.edge.runner import parse_size  # TensorFlow-free: the parent's RSS stays small


def main(argv=None):
    p = argparse.ArgumentParser(prog="benchmark.py", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", metavar="MODEL", help=".tflite files")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=None, metavar="HxW",
                   help="input sizes (default: each model's own size)")
    ncpu = os.cpu_count() or 1
    p.add_argument("--threads", nargs="+", type=int, default=sorted({1, ncpu}),
                   help=f"thread counts (default: 1 and {ncpu})")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    p.add_argument("--keras", action="append", default=[], metavar="CKPT.keras",
                   help="also time this Keras float model (tf.function) as a reference")
    p.add_argument("--json", default=None, metavar="OUT.json",
                   help="also write the full results (per-run details, machine) to this JSON file")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    args = p.parse_args(argv)
    if not args.models and not args.keras:
        p.error("give at least one MODEL.tflite or --keras CKPT.keras")
    if args.runs < 1 or args.warmup < 0 or any(t < 1 for t in args.threads):
        p.error("--runs and --threads must be >= 1, --warmup >= 0")
    for m in args.models + args.keras:
        if not os.path.isfile(m):
            p.error(f"{m}: no such file")

    report = run_benchmark(args.models, args.keras, sizes=args.sizes, threads=args.threads,
                           warmup=args.warmup, runs=args.runs, timeout=args.timeout)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        atomic_write(args.json, json.dumps(report, indent=2))
    print()
    print_table(report["results"])
    if args.json:
        print(f"\nwrote {args.json}")
    failed = [r for r in report["results"] if r.get("size_mode") == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
