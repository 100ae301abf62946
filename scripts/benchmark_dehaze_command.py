#!/usr/bin/env python3
"""Wall time and peak memory of whole ``keras-dehaze dehaze`` commands on photos of three sizes.

    python scripts/benchmark_dehaze_command.py PHOTO [--sizes 620x460 1600x1200 4000x3000]
        [--models default aecrnet] [--precision int8 float] [--extra ARGS]

PHOTO is resized (area interpolation, or cubic when enlarging) to each size and saved as PNG in a
temporary folder. Each command runs in a fresh process, end to end (Python start-up, imports,
model loading, reading, dehazing, writing), timed from outside; its peak memory is the child's
RSS high-water mark (``ru_maxrss`` of a one-child wrapper). Run it on a quiet machine: the load
average is printed with every row.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import cv2

from keras_dehaze.data.image_io import read_image, write_image


def _size(text):
    w, h = text.lower().split("x")
    return int(w), int(h)


def make_photo(source, size, folder):
    w, h = size
    image = read_image(source)
    shrink = w * h < image.shape[0] * image.shape[1]
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    path = os.path.join(folder, f"photo_{w}x{h}.png")
    write_image(path, resized.clip(0, 1))
    return path


# Runs one command in a one-child wrapper process, so that ru_maxrss belongs to it alone.
_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "cmd = json.loads(sys.argv[1])\n"
    "start = time.perf_counter()\n"
    "proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
    "seconds = time.perf_counter() - start\n"
    "if proc.returncode:\n"
    "    sys.stderr.write(proc.stderr[-2000:])\n"
    "peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0\n"
    "print(json.dumps([seconds, peak_mb, proc.returncode]))\n"
)


def measure(cmd):
    """(seconds, peak RSS in MB, exit code) of ``cmd``, end to end."""
    out = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(cmd)], stdout=subprocess.PIPE,
                         text=True, check=True)
    seconds, peak_mb, code = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds, peak_mb, code


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", help="a photo to resize to each size")
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(620, 460), (1600, 1200), (4000, 3000)])
    parser.add_argument("--models", nargs="+", default=["default", "aecrnet"])
    parser.add_argument("--precision", nargs="+", default=["int8", "float"], choices=["int8", "float"])
    parser.add_argument("--extra", default="", help="more options for every command, one string")
    args = parser.parse_args(argv)

    beside = os.path.join(os.path.dirname(sys.executable), "keras-dehaze")  # an unactivated venv
    exe = beside if os.path.isfile(beside) else shutil.which("keras-dehaze") or "keras-dehaze"
    folder = tempfile.mkdtemp(prefix="kd_bench_")
    try:
        print("| model | precision | photo | wall | peak RSS | load avg | exit |")
        print("|---|---|---|---|---|---|---|")
        for size in args.sizes:
            photo = make_photo(args.photo, size, folder)
            for model in args.models:
                for precision in args.precision:
                    out = os.path.join(folder, "out")
                    cmd = [exe, "dehaze", photo, "-o", out, "--overwrite", "--model", model,
                           "--precision", precision] + args.extra.split()
                    load = os.getloadavg()[0]
                    seconds, peak_mb, code = measure(cmd)
                    print(f"| {model} | {precision} | {size[0]}x{size[1]} | {seconds:.1f} s | "
                          f"{peak_mb:.0f} MB | {load:.1f} | {code} |", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
