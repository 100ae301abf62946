"""Writes depth maps for clean images, for the clean branch of Rehazy training.

Output: ``<out>/<name>.<ext>`` (a copy of the clean image) and ``<out>/<name>_depth.png``
(16-bit PNG, relative depth normalised to [0, 1], larger = farther), the layout
`keras_dehaze.data.unpaired.find_clean_depth` reads (``rehazy.clean: [<out>]``).

Sources:
    # (a) dataset ground truth: SOTS/RESIDE pairs (depth recovered from the pair), RGB-D frames,
    #     Middlebury disparity; the layout is detected (a folder of such folders works too)
    python training/prepare_clean_depth.py --src data/sots-indoor --out data/clean \
        --exclude-scenes 1409
    python training/prepare_clean_depth.py --src data/depth --out data/clean
    # (b) a user depth network (SavedModel dir, .keras or .tflite), e.g. Depth Anything V2:
    python training/prepare_clean_depth.py --src photos/ --out data/clean --model da2.keras \
        --depth-output disparity --input-size 518 518 --imagenet-norm
    # (c) clean photos without depth sensor: PyDNet++ (mobilePydnet TFLite, run by LiteRT without
    #     TensorFlow); the file from --pydnet <path>, else $KERAS_DEHAZE_PYDNET or ~/.keras/models/
    python training/prepare_clean_depth.py --src data/clean-photos --out data/clean \
        --pydnet path/to/pydnet_plus_plus.tflite
    # Check an estimator against measured depth first: python -m keras_dehaze.depth.evaluate
"""

import argparse
import os
import shutil
import sys


import numpy as np

from keras_dehaze.data.image_io import read_image, write_image


def _unique_name(path, taken):
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem not in taken else f"{os.path.basename(os.path.dirname(path))}_{stem}"
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _write(out, clean_path, depth, taken):
    import cv2

    image = read_image(clean_path)
    if depth.shape != image.shape[:2]:
        depth = cv2.resize(depth, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    name = _unique_name(clean_path, taken)
    shutil.copyfile(clean_path, os.path.join(out, name + os.path.splitext(clean_path)[1].lower()))
    write_image(os.path.join(out, f"{name}_depth.png"), np.clip(depth, 0.0, 1.0), bit_depth=16)
    return name


def from_dataset(src, out, kind="auto", exclude_scenes=()):
    from keras_dehaze.depth.dataset import clean_depth_pairs

    taken, written = set(), []
    for clean_path, depth in clean_depth_pairs(src, kind, exclude_scenes):
        depth = read_image(depth)[..., 0] if isinstance(depth, str) else depth()
        written.append(_write(out, clean_path, depth, taken))
    return written


def from_model(src, out, model, output="depth", input_size=None, mean=None, std=None):
    from keras_dehaze.data.pairing import list_images
    from keras_dehaze.depth import ModelFileDepth

    estimator = ModelFileDepth(model, output=output, input_size=input_size, mean=mean, std=std)
    print(f"depth from {estimator.describe()}", flush=True)
    taken, written = set(), []
    for path in list_images(src):
        depth = estimator(read_image(path)[None]).numpy()[0, ..., 0]
        written.append(_write(out, path, depth, taken))
    return written


def from_pydnet(src, out, path=None, output="depth"):
    """Depth of every image of `src` from PyDNet++ (numpy + LiteRT only)."""
    from keras_dehaze.data.pairing import list_images
    from keras_dehaze.depth.pydnet import PyDNetTFLite

    net = PyDNetTFLite(path or None, output=output)
    print(f"depth from {net.describe()}", flush=True)
    taken, written = set(), []
    for path in list_images(src):
        written.append(_write(out, path, net.depth(read_image(path)), taken))
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="dataset folder (or clean images with --model)")
    parser.add_argument("--out", required=True, help="output folder (clean copies + <name>_depth.png)")
    parser.add_argument("--kind", default="auto", help="auto, sots, rgbd, middlebury, prepared")
    parser.add_argument("--exclude-scenes", nargs="*", default=[], help="SOTS scene ids to leave out (validation)")
    parser.add_argument("--model", help="depth network file: SavedModel dir, .keras or .tflite")
    parser.add_argument("--pydnet", nargs="?", const="", default=None,
                        help="PyDNet++ .tflite for photos without depth (no value: $KERAS_DEHAZE_PYDNET "
                             "or ~/.keras/models/pydnet_plus_plus.tflite); --depth-output applies")
    parser.add_argument("--depth-output", default="depth", choices=["depth", "disparity"])
    parser.add_argument("--input-size", nargs=2, type=int, help="H W the depth model takes")
    parser.add_argument("--imagenet-norm", action="store_true", help="ImageNet mean/std input normalisation")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.pydnet is not None:
        written = from_pydnet(args.src, args.out, args.pydnet, args.depth_output)
    elif args.model:
        from keras_dehaze.model_files import IMAGENET_MEAN, IMAGENET_STD

        norm = (IMAGENET_MEAN, IMAGENET_STD) if args.imagenet_norm else (None, None)
        written = from_model(args.src, args.out, args.model, args.depth_output, args.input_size, *norm)
    else:
        written = from_dataset(args.src, args.out, args.kind, args.exclude_scenes)
    print(f"wrote {len(written)} clean images with depth to {args.out}: {', '.join(written[:10])}"
          + (" ..." if len(written) > 10 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
