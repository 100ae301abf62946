"""Convert a preset to the int8 ``.tflite`` shipped beside it (maintainers).

    python edge/ship_preset.py lkdnet_s_mixed [--mode int8_dynamic] [--size 256]

Writes ``keras_dehaze/weights/<name>_int8.tflite`` and records it in ``<name>.json``
(``int8_tflite``, ``int8_kind``, ``int8_size``). LKD-Net is exported with its BatchNorm folded.
The graph is converted at ``--size`` (a multiple of 4: no pad or crop ops), so LiteRT can
resize its input to any other multiple of 4. Measure its gap to float with edge/convert.py.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

KINDS = {"int8_dynamic": "int8 weights, dynamic-range int8 activations (no calibration)",
         "int8": "full integer int8 (calibrated)"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="a preset name")
    parser.add_argument("--mode", default="int8_dynamic", choices=sorted(KINDS),
                        help="int8_dynamic (default) or int8 (full integer; needs --calib)")
    parser.add_argument("--size", type=int, default=256, help="conversion size (multiple of 4)")
    parser.add_argument("--calib", nargs="*", default=[], help="images for full-integer calibration")
    parser.add_argument("--note", default="", help="recorded with the file (e.g. the measured int8-vs-float gap)")
    args = parser.parse_args(argv)

    from keras_dehaze import pretrained
    from keras_dehaze.models.lkdnet import fold_batchnorm
    from keras_dehaze.quantization import rebuild_fixed
    from tflite_export import convert, random_crops

    model = pretrained.load_pretrained(args.name)
    meta = pretrained.metadata(args.name)
    s = args.size
    if meta["model"] == "lkdnet":
        fixed = fold_batchnorm(model, input_shape=(s, s, 3), batch_size=1)
    else:
        fixed = rebuild_fixed(model, s, s)
    representative = random_crops(args.calib, (s, s), 32) if args.mode == "int8" else None
    blob = convert(fixed, args.mode, representative=representative, int8_io=False)
    name = pretrained.resolve(args.name)
    out = os.path.join(pretrained.WEIGHTS_DIR, f"{name}_int8.tflite")
    with open(out, "wb") as f:
        f.write(blob)
    extra = {"int8_note": args.note} if args.note else {}
    pretrained.update_metadata(name, int8_tflite=os.path.basename(out), int8_kind=KINDS[args.mode],
                               int8_size=[s, s], **extra)
    print(f"wrote {out} ({len(blob) / 1e6:.2f} MB, {KINDS[args.mode]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
