"""Score models on benchmark folders (same as ``keras-dehaze eval``).

    python training/evaluate.py data/sots-outdoor data/dense-haze \
        --model aecrnet --model runs/aecrnet_cpu_demo/best.keras -o eval_results
"""

import sys

from keras_dehaze.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
