#!/usr/bin/env python3
"""On-device dehazing with a .tflite model, no TensorFlow (keras_dehaze.edge.runner).

    python edge/infer.py --model model_int8.tflite photos/ -o dehazed/ --threads 4

``python edge/infer.py --help`` lists the options. On a device without this repository, copy the
runner's files (keras_dehaze.edge.runner.DEVICE_FILES) and run ``python -m
keras_dehaze.edge.runner`` with the same options (docs/deployment.md).
"""

import sys

from keras_dehaze.edge.runner import main

if __name__ == "__main__":
    sys.exit(main())
