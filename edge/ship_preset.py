"""Convert a preset to the int8 ``.tflite`` shipped beside it (maintainers).

    python edge/ship_preset.py lkdnet_s_mixed [--mode int8_dynamic] [--size 256]

Writes ``keras_dehaze/weights/<name>_int8.tflite`` and records it in ``<name>.json``
(``int8_tflite``, ``int8_kind``, ``int8_size``). LKD-Net is exported with its BatchNorm folded.
The graph is converted at ``--size`` (a multiple of 4: no pad or crop ops), so LiteRT can
resize its input to any other multiple of 4. Measure its gap to float with edge/convert.py.
(keras_dehaze.edge.export.ship_preset does the work.)
"""

import argparse
import sys


def main(argv=None):
    from keras_dehaze.edge.export import SHIPPED_INT8_KINDS, ship_preset  # imports TensorFlow

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="a preset name")
    parser.add_argument("--mode", default="int8_dynamic", choices=sorted(SHIPPED_INT8_KINDS),
                        help="int8_dynamic (default) or int8 (full integer; needs --calib)")
    parser.add_argument("--size", type=int, default=256, help="conversion size (multiple of 4)")
    parser.add_argument("--calib", nargs="*", default=[], help="images for full-integer calibration")
    parser.add_argument("--note", default="", help="recorded with the file (e.g. the measured int8-vs-float gap)")
    args = parser.parse_args(argv)
    path, size = ship_preset(args.name, args.mode, size=args.size, calib=args.calib, note=args.note)
    print(f"wrote {path} ({size / 1e6:.2f} MB, {SHIPPED_INT8_KINDS[args.mode]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
