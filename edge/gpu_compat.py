#!/usr/bin/env python3
"""Check .tflite models against the GPU rules, offline (keras_dehaze.edge.gpu_compat; no TensorFlow).

    python edge/gpu_compat.py model.tflite [--no-quant] [--json] [--backend classic|webgpu|both]

Prints the verdict(s) and the offending ops; exit status 0 when every printed verdict is
compatible, 1 otherwise.
"""

import argparse
import json
import sys

from keras_dehaze.edge.flatbuffer import load_model_info
from keras_dehaze.edge.gpu_compat import BACKENDS, check_gpu_compatibility


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Check a .tflite model against GPU rules (no TensorFlow needed): the classic "
        "OpenCL/GL delegate's and LiteRT's WebGPU accelerator's, each verdict labelled. A static "
        "estimate: running the model with infer.py --accelerator gpu is the check that counts. "
        "Exit code 0 = every printed verdict compatible, 1 = not."
    )
    p.add_argument("model", nargs="+", help=".tflite file(s)")
    p.add_argument("--no-quant", action="store_true",
                   help="delegate without ENABLE_QUANT (QUANTIZE/DEQUANTIZE/int8 tensors rejected)")
    p.add_argument("--json", action="store_true", help="print the report(s) as JSON")
    p.add_argument("--backend", choices=("both", *BACKENDS), default="both",
                   help="whose rules: classic (OpenCL/GL delegate), webgpu (LiteRT WebGPU "
                        "accelerator) or both (default; classic first)")
    a = p.parse_args(argv)
    backends = list(BACKENDS) if a.backend == "both" else [a.backend]
    reports = []
    for m in a.model:
        info = load_model_info(m)
        reports += [check_gpu_compatibility(info, allow_quant_ops=not a.no_quant, backend=b)
                    for b in backends]
    if a.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        print("\n\n".join(r.format() for r in reports))
    return 0 if all(r.compatible for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
