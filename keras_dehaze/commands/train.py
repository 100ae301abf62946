"""``keras-dehaze train --config CONFIG.yaml``: as training/train.py."""

import sys

# Without a config file, training on the built-in defaults alone would write into
# runs/experiment/ with no data: these must then be given with --set.
REQUIRED_WITHOUT_CONFIG = ("data.train", "run.out_dir")


def run(args):
    """Exit codes: 0 done; 2 a problem with the config, data, output folder or a checkpoint
    (one "error: ..." line, no traceback, nothing written); 1 the loss became NaN/inf (the
    last good checkpoint is kept)."""
    from keras_dehaze.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.set)  # first: a misspelt --set key is named as such
    except ConfigError as e:
        print(f"error: config: {e}", file=sys.stderr)
        return 2
    given = {item.split("=", 1)[0].strip() for item in args.set}
    missing = [key for key in REQUIRED_WITHOUT_CONFIG if key not in given]
    if not args.config and missing:
        print("error: train needs --config CONFIG.yaml (the experiment to run; examples in training/configs/), "
              f"or without a config file at least {' '.join(f'--set {k}=...' for k in REQUIRED_WITHOUT_CONFIG)} "
              f"(missing: {', '.join(missing)}); nothing was trained or created", file=sys.stderr)
        return 2
    from keras_dehaze.quiet import import_tensorflow

    import_tensorflow()
    from keras_dehaze.experiment import validate

    try:  # before anything is created
        validate(config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from keras_dehaze.callbacks import CheckpointError, NonFiniteLossError
    from keras_dehaze.data import DatasetError
    from keras_dehaze.experiment import run as run_experiment
    from keras_dehaze.pretrained_weights import PretrainedWeightsError

    try:
        run_experiment(config)
    except (ConfigError, DatasetError, CheckpointError, PretrainedWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
