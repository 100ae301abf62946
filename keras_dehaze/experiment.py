"""Runs one training experiment from a ``Config``: data, network, trainer, fit, checkpoints.

The training strategy is the class registered as ``trainer.name``; everything strategy-specific
(its config checks, data, construction, extra callbacks, description) comes through the hooks
of ``keras_dehaze.trainers.base.Trainer``.

Resuming is automatic: rerunning with the same ``run.out_dir`` continues from the last backup
(optimizer state and step count included) through Keras' ``BackupAndRestore``.

Multi-worker (``run.strategy: multi_worker``, roles from ``TF_CONFIG``): every worker runs
``run`` with the same config; only the chief writes into ``run.out_dir`` (the others write
into a temporary directory that is deleted at the end); the backup must be on a filesystem all
workers share, since every worker restores from it.
"""

import glob
import json
import os
import time

import yaml

from keras_dehaze.atomic import atomic_write
from keras_dehaze.backend import keras, tf
from keras_dehaze.callbacks import (
    CheckedBackupAndRestore,
    DehazerCheckpoint,
    NaNGuard,
    WeightAverage,
    validate_backup,
)
from keras_dehaze.config import ConfigError, to_dict
from keras_dehaze.data.training_data import log
from keras_dehaze.distribute import (
    STRATEGIES,
    make_strategy,
    remove_worker_write_dir,
    replicate_batches,
    worker_write_dir,
)
from keras_dehaze.models import build_model
from keras_dehaze.pretrained_weights import load_pretrained_weights
from keras_dehaze.trainers import get_trainer
from keras_dehaze.trainers.common import capped_psnr, ssim


def build_trainer(config, dehazer):
    """The strategy named by ``trainer.name`` for ``dehazer`` (ConfigError for an unknown name)."""
    cls = get_trainer(config.trainer.name)
    return cls.from_experiment_config(cls.resolve_config(config), dehazer)


def make_optimizer(optim_cfg, total_steps):
    lr = optim_cfg.lr
    if optim_cfg.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(optim_cfg.lr, decay_steps=max(1, total_steps))
    elif optim_cfg.schedule != "constant":
        raise ConfigError(f"optim.schedule must be 'cosine' or 'constant', got {optim_cfg.schedule!r}")
    extra = {"clipnorm": optim_cfg.clipnorm} if optim_cfg.clipnorm else {}
    if optim_cfg.ema:
        if not 0.0 < optim_cfg.ema < 1.0:
            raise ConfigError(f"optim.ema must be in (0, 1) (e.g. 0.999) or 0 for off, got {optim_cfg.ema}")
        extra.update(use_ema=True, ema_momentum=optim_cfg.ema)
    return keras.optimizers.Adam(lr, beta_1=optim_cfg.beta_1, beta_2=optim_cfg.beta_2, **extra)


def identity_scores(val_ds):
    """PSNR/SSIM of the hazy input itself: the floor any dehazer must beat."""
    psnr, ssim_values = [], []
    for hazy, clear in val_ds:
        psnr.extend(capped_psnr(hazy, clear).numpy().tolist())
        ssim_values.extend(ssim(hazy, clear).numpy().tolist())
    return {"val_psnr": sum(psnr) / len(psnr), "val_ssim": sum(ssim_values) / len(ssim_values)}


def _folders(value):
    if not value:
        return []
    return [value] if isinstance(value, str) else [v for v in value if v]


def _setting(config, key):
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def validate(config):
    """Checks what can be checked before anything is created (run folder, depth cache, ...):
    the strategy name, the strategy's own checks (``check_config``: e.g. the trainer/model
    combination), the distribution strategy, and that every configured data folder exists.
    Raises ConfigError; creates nothing. Returns the config with the strategy's defaults of
    unset ``trainer`` keys filled in (``Trainer.resolve_config``)."""
    cls = get_trainer(config.trainer.name)
    config = cls.resolve_config(config)
    cls.check_config(config)
    if config.run.strategy not in STRATEGIES:
        raise ConfigError(f"run.strategy must be one of {', '.join(STRATEGIES)}, got {config.run.strategy!r}")
    keys = ("data.train", "data.val", *cls.folder_settings)
    checks = [(key, path) for key in keys for path in _folders(_setting(config, key))]
    for key, path in checks:
        path = os.path.expanduser(str(path))
        if glob.has_magic(path):
            if not glob.glob(path, recursive=True):
                raise ConfigError(f"{key}: no file or folder matches {path!r} (nothing was created)")
        elif not os.path.exists(path):
            raise ConfigError(f"{key}: folder not found: {path!r} (nothing was created)")
    return config


def run(config):
    """Trains as configured and returns the summary dict (also written to summary.json)."""
    config = validate(config)  # before the run folder is created; config.yaml records the values used
    strategy = make_strategy(config.run.strategy)  # first: a multi-worker strategy precedes other TF work
    out = config.run.out_dir
    try:
        write_dir = worker_write_dir(out, strategy)  # out itself on the chief, a temporary dir elsewhere
    except OSError as e:
        raise ConfigError(f"run.out_dir {out!r} cannot be created or written ({e.strerror or e})") from None
    try:
        return _run(config, strategy, out, write_dir)
    finally:
        remove_worker_write_dir(write_dir, out)


def _run(config, strategy, out, write_dir):
    trainer_cls = get_trainer(config.trainer.name)
    keras.utils.set_random_seed(config.run.seed)
    train_ds, val_ds, steps = trainer_cls.load_data(config, strategy)
    if val_ds is not None:  # one copy of each validation image per replica: no replica gets an empty batch
        val_ds = replicate_batches(val_ds, strategy.num_replicas_in_sync)

    with strategy.scope():
        try:
            dehazer = build_model(config.model.name, **config.model.args)
        except (TypeError, ValueError) as e:  # unknown model name, unknown/ill-typed model.args
            raise ConfigError(f"model.name {config.model.name!r} with model.args {config.model.args}: {e}") from None
        if config.model.pretrained:  # before the trainer: a Colabator teacher clones these weights
            load_pretrained_weights(dehazer, config.model.pretrained)
            log(f"initialised {config.model.name} from {config.model.pretrained}")
        trainer = trainer_cls.from_experiment_config(config, dehazer)
        trainer.compile(optimizer=make_optimizer(config.optim, steps * config.optim.epochs))
        # The trainers return metric results, already synchronised over replicas and workers;
        # tf_keras's default ("auto" = "sum") adds them up once more across workers under
        # MultiWorkerMirroredStrategy (every logged loss/PSNR x the number of workers).
        trainer.distribute_reduction_method = "first"
        trainer(tf.zeros([1, 16, 16, 3]))  # built before fit, so BackupAndRestore can restore
    log(f"model {config.model.name}: {dehazer.count_params():,} parameters; {trainer.describe()}")
    # the strategy's own data streams and callbacks (e.g. Colabator's label pool)
    train_ds, extra_callbacks = trainer.prepare_experiment(config, train_ds, strategy)

    backup_dir = os.path.join(out, "backup")
    resuming = os.path.isdir(backup_dir) and bool(os.listdir(backup_dir))
    if resuming:  # a corrupt backup or one of another model: a clear error before anything is written
        validate_backup(trainer, backup_dir)
    atomic_write(os.path.join(write_dir, "config.yaml"), yaml.safe_dump(to_dict(config), sort_keys=False))
    summary_path = os.path.join(write_dir, "summary.json")
    summary = {}
    if resuming and os.path.exists(os.path.join(out, "summary.json")):
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
    if resuming:
        log(f"resuming from {backup_dir}")
    elif val_ds is not None:
        summary["identity"] = identity_scores(val_ds)
        summary["before"] = _evaluate(trainer, val_ds)
        log(f"validation before training: {summary['before']}; hazy input: {summary['identity']}")
    _write_json(summary_path, summary)

    backup = CheckedBackupAndRestore(  # handles multi-worker itself (non-chief backups go to a temp dir)
        backup_dir, save_freq=config.run.backup_every_steps or "epoch", delete_checkpoint=False
    )
    average_in, average_out = [], []
    if config.optim.ema:  # validation and checkpoints see the average, training and backups the raw weights
        swap_in, swap_out = WeightAverage(trainer.optimizer, dehazer.trainable_variables).callbacks()
        average_in, average_out = [swap_in], [swap_out]
        log(f"validation, best.keras and latest.keras use the moving average of the weights "
            f"(momentum {config.optim.ema})")
    callbacks = [
        NaNGuard(),  # first: a NaN step raises before the backup below could save it
        backup,
        *extra_callbacks,  # before the checkpoint and CSV logger: they may add keys to the logs
        *average_in,
        DehazerCheckpoint(dehazer, write_dir),
        keras.callbacks.CSVLogger(os.path.join(write_dir, "log.csv"), append=True),
        *average_out,
    ]
    if config.run.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(out, "tensorboard")))
    callbacks.append(backup.after_epoch_callback())  # last: an epoch counts as done once all of it is written

    start = time.time()
    trainer.fit(
        train_ds, epochs=config.optim.epochs, steps_per_epoch=steps, validation_data=val_ds,
        callbacks=callbacks, verbose=config.run.verbose,
    )
    summary["wall_time_s"] = summary.get("wall_time_s", 0.0) + time.time() - start
    summary["steps"] = int(trainer.optimizer.iterations.numpy())
    if val_ds is not None:
        summary["after"] = _evaluate(trainer, val_ds)
        log(f"validation after training: {summary['after']}")
    _write_json(summary_path, summary)
    return summary


def _evaluate(trainer, val_ds):
    scores = trainer.evaluate(val_ds, return_dict=True, verbose=0)
    return {f"val_{k}": float(v) for k, v in scores.items() if k in ("psnr", "ssim")}


def _write_json(path, data):
    atomic_write(path, json.dumps(data, indent=2))
