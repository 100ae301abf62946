"""Convert an official LKD-Net PyTorch checkpoint (.pth) to Keras, without PyTorch.

    # a .keras file to dehaze with (keras-dehaze dehaze --model lkd.keras) or fine-tune from
    python training/convert_weights.py LKD-b.pth --variant b --out lkdnet_b.keras

    # a package preset (maintainers): keras_dehaze/weights/<name>.{npz,json} + licence file
    python training/convert_weights.py path/to/ITS/LKD-s.pth --variant s --preset lkdnet_s_its \
        --trained-on "RESIDE ITS (indoor)" --source "SWU-CS-MediaLab/LKD-Net @ be60badf : result/ITS/LKD-s/LKD-s.pth"

Every checkpoint key is mapped to one Keras weight with a shape check; unknown, missing or
mis-shaped keys stop the conversion with their names listed.
"""

import argparse
import hashlib
import os
import shutil
import sys


LICENSE_FILE = "LICENSE-LKD-Net.txt"
ATTRIBUTION = ("LKD-Net weights Copyright (c) 2023 SWU-CS-MediaLab, from github.com/SWU-CS-MediaLab/LKD-Net, "
               "MIT licence; paper: Luo et al., \"LKD-Net: Large Kernel Convolution Network for Single Image "
               "Dehazing\", ICME 2023. Converted to Keras by keras-dehaze (training/convert_weights.py).")


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="an LKD-Net .pth file (zip or legacy format)")
    parser.add_argument("--variant", required=True, choices=["t", "s", "b", "l"], help="LKD-T/S/B/L")
    parser.add_argument("--out", help="write a .keras file here")
    parser.add_argument("--preset", help="write a package preset of this name into keras_dehaze/weights/")
    parser.add_argument("--trained-on", default="", help="preset record: training data")
    parser.add_argument("--source", default="", help="preset record: where the checkpoint comes from")
    parser.add_argument("--license", default=None,
                        help=f"preset: the upstream licence text file, copied to keras_dehaze/weights/{LICENSE_FILE}")
    args = parser.parse_args(argv)
    if not (args.out or args.preset):
        parser.error("give --out FILE.keras and/or --preset NAME")

    from keras_dehaze import pretrained
    from keras_dehaze.models import LKDNet
    from keras_dehaze.zoo.lkdnet_weights import WeightConversionError, load_lkdnet_state_dict
    from keras_dehaze.zoo.torch_checkpoint import CheckpointError, load_state_dict

    try:
        model = load_lkdnet_state_dict(LKDNet(args.variant), load_state_dict(args.checkpoint))
    except (FileNotFoundError, CheckpointError, WeightConversionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        model.save(args.out)
        print(f"wrote {args.out}")
    if args.preset:
        record = {
            "description": f"LKD-{args.variant.upper()}, official weights trained on {args.trained_on}",
            "trained_on": [args.trained_on],
            "source": args.source,
            "source_sha256": _sha256(args.checkpoint),
            "license": "MIT",
            "license_file": LICENSE_FILE,
            "attribution": ATTRIBUTION,
        }
        pretrained.export_pretrained(model, args.preset, "lkdnet", {"variant": args.variant}, record, dtype="float32")
        if args.license:
            shutil.copy(args.license, os.path.join(pretrained.WEIGHTS_DIR, LICENSE_FILE))
        print(f"wrote preset {args.preset} to {pretrained.WEIGHTS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
