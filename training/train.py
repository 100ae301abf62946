"""Train a dehazing network from a YAML config (same as ``keras-dehaze train``).

    python training/train.py --config training/configs/aecrnet_cpu_demo.yaml \
        --set data.train=data/sots-indoor --set run.out_dir=runs/demo

Rerunning with the same run.out_dir resumes from the last backup (kill-safe).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_dehaze.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
