"""Runs one training experiment from a ``Config``: data, network, trainer, fit, checkpoints.

Resuming is automatic: rerunning with the same ``run.out_dir`` continues from the last backup
(optimizer state and step count included) through Keras' ``BackupAndRestore``.

Multi-worker (``run.strategy: multi_worker``, roles from ``TF_CONFIG``): every worker runs
``run`` with the same config; only the chief writes into ``run.out_dir`` (the others write
into a temporary directory that is deleted at the end); the backup must be on a filesystem all
workers share, since every worker restores from it.
"""

import glob
import json
import math
import os
import time

import yaml

from keras_dehaze.backend import keras, tf
from keras_dehaze.callbacks import (
    CheckedBackupAndRestore,
    DehazerCheckpoint,
    NaNGuard,
    WeightAverage,
    validate_backup,
)
from keras_dehaze.config import ConfigError, to_dict
from keras_dehaze.data import find_pairs, paired_dataset, split_by_scene, validation_dataset
from keras_dehaze.distribute import make_strategy, remove_worker_write_dir, replicate_batches, worker_write_dir
from keras_dehaze.losses import ContrastiveRegularization
from keras_dehaze.models import build_model
from keras_dehaze.trainers import TRAINERS
from keras_dehaze.trainers.colabator import load_pretrained_weights
from keras_dehaze.trainers.common import capped_psnr, ssim


def log(message):
    print(f"[keras-dehaze] {message}", flush=True)


def load_pairs(data_cfg, seed):
    """Training and validation pairs; validation holds out whole scenes."""
    if not data_cfg.train:
        raise ConfigError("data.train is empty: give paired dataset folder(s) (--set data.train=PATH)")
    pairs = [pair for root in data_cfg.train for pair in find_pairs(root, data_cfg.layout)]
    if data_cfg.val:
        return pairs, find_pairs(data_cfg.val, data_cfg.layout)
    if data_cfg.val_scenes or data_cfg.val_fraction:
        return split_by_scene(
            pairs,
            val_scenes=[str(s) for s in data_cfg.val_scenes] or None,
            val_fraction=data_cfg.val_fraction or None,
            seed=seed,
        )
    return pairs, []


def build_contrastive(trainer_cfg):
    """The CR loss, or None when cr_weight is 0. Missing pretrained features raise here,
    before any training starts (never random features)."""
    if trainer_cfg.cr_weight <= 0:
        return None
    return ContrastiveRegularization(
        feature_extractor=trainer_cfg.features,
        weights=trainer_cfg.feature_weights or None,
        num_negatives=trainer_cfg.num_negatives,
        positive_only=trainer_cfg.positive_only,
    )


def build_trainer(config, dehazer):
    name = config.trainer.name
    if name not in TRAINERS:
        raise ConfigError(f"unknown trainer.name {name!r}; known: {sorted(TRAINERS)}")
    cls = TRAINERS[name]
    if hasattr(cls, "from_experiment_config"):  # trainers that read their own config section
        return cls.from_experiment_config(config, dehazer)
    return cls(dehazer, build_contrastive(config.trainer), config.trainer.cr_weight,
               cr_start_step=config.trainer.cr_start_step)


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


# Models whose transmission output corun_pretrain trains (CORUN's stages).
CORUN_MODELS = ("corun", "corun_compact")
# trainer.name -> (config section, fields) of the extra data folders that trainer reads.
TRAINER_FOLDERS = {"rehazy": ("rehazy", ("clean", "hazy")), "colabator": ("colabator", ("real",)),
                   "corun_pretrain": ("corun", ("clean",))}


def _folders(value):
    if not value:
        return []
    return [value] if isinstance(value, str) else [v for v in value if v]


def validate(config):
    """Checks what can be checked before anything is created (run folder, depth cache, ...):
    the trainer/model combination and that every configured data folder exists. Raises
    ConfigError; creates nothing."""
    if config.trainer.name == "corun_pretrain" and config.model.name not in CORUN_MODELS:
        raise ConfigError(
            f"trainer.name corun_pretrain with model.name {config.model.name!r}: corun_pretrain needs CORUN's "
            f"transmission output; it works with model.name {'/'.join(CORUN_MODELS)} only")
    checks = [(f"data.train", path) for path in _folders(config.data.train)]
    checks += [("data.val", path) for path in _folders(config.data.val)]
    section, fields = TRAINER_FOLDERS.get(config.trainer.name, (None, ()))
    for field_name in fields:
        checks += [(f"{section}.{field_name}", path) for path in _folders(getattr(getattr(config, section), field_name))]
    for key, path in checks:
        path = os.path.expanduser(str(path))
        if glob.has_magic(path):
            if not glob.glob(path, recursive=True):
                raise ConfigError(f"{key}: no file or folder matches {path!r} (nothing was created)")
        elif not os.path.exists(path):
            raise ConfigError(f"{key}: folder not found: {path!r} (nothing was created)")


def run(config):
    """Trains as configured and returns the summary dict (also written to summary.json)."""
    validate(config)  # before the run folder is created
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
    keras.utils.set_random_seed(config.run.seed)
    train_ds, val_ds, steps = load_training_data(config, strategy)
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
        trainer = build_trainer(config, dehazer)
        trainer.compile(optimizer=make_optimizer(config.optim, steps * config.optim.epochs))
        # The trainers return metric results, already synchronised over replicas and workers;
        # tf_keras's default ("auto" = "sum") adds them up once more across workers under
        # MultiWorkerMirroredStrategy (every logged loss/PSNR x the number of workers).
        trainer.distribute_reduction_method = "first"
        trainer(tf.zeros([1, 16, 16, 3]))  # built before fit, so BackupAndRestore can restore
    cr = trainer.contrastive
    if hasattr(trainer, "describe"):
        log(f"model {config.model.name}: {dehazer.count_params():,} parameters; {trainer.describe()}")
    else:
        log(f"model {config.model.name}: {dehazer.count_params():,} parameters; loss L1"
            + (f" + {config.trainer.cr_weight} x CR ({cr.describe()})" if cr is not None else " only (no CR)"))

    extra_callbacks = []
    if hasattr(trainer, "prepare_experiment"):  # trainers with their own data streams and callbacks
        train_ds, extra_callbacks = trainer.prepare_experiment(config, train_ds, strategy)

    backup_dir = os.path.join(out, "backup")
    resuming = os.path.isdir(backup_dir) and bool(os.listdir(backup_dir))
    if resuming:  # a corrupt backup or one of another model: a clear error before anything is written
        validate_backup(trainer, backup_dir)
    with open(os.path.join(write_dir, "config.yaml"), "w") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False)
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


# Trainers fed with clean images + depth instead of pairs -> the config section with their
# `clean` folders (and `hazy` folders, if the trainer uses real hazy images).
CLEAN_DEPTH_SECTIONS = {"rehazy": "rehazy", "corun_pretrain": "corun"}


def load_training_data(config, strategy):
    """(endless training dataset, validation dataset or None, steps per epoch) for the trainer."""
    if config.trainer.name in CLEAN_DEPTH_SECTIONS:
        return _load_unpaired_data(config, CLEAN_DEPTH_SECTIONS[config.trainer.name])
    train_pairs, val_pairs = load_pairs(config.data, config.run.seed)
    global_batch = config.data.batch_size
    log(f"{len(train_pairs)} training pairs, {len(val_pairs)} validation pairs; "
        f"global batch {global_batch} = {strategy.num_replicas_in_sync} replica(s) x "
        f"{global_batch / strategy.num_replicas_in_sync:g} per replica")

    steps = config.optim.steps_per_epoch or math.ceil(len(train_pairs) / global_batch)
    train_ds = paired_dataset(
        train_pairs, global_batch, crop_size=config.data.crop_size or None, augment=config.data.augment,
        shuffle=True, seed=config.run.seed, repeat=True, cache=config.data.cache,
    )
    if config.data.synthetic_fraction > 0:
        train_ds = _mix_with_resynthesis(train_ds, train_pairs, config)
    val_ds = validation_dataset(val_pairs) if val_pairs else None
    return train_ds, val_ds, steps


def _load_unpaired_data(config, section="rehazy"):
    """Rehazy / CORUN data: clean images + depth (<section>.clean folders, and the clear images of
    data.train pairs with depth recovered from the pairs, validation scenes excluded) and real hazy
    images (<section>.hazy, if the section has it)."""
    from keras_dehaze.data.resynthesis import prepare_depth_maps
    from keras_dehaze.data.unpaired import find_clean_depth, list_hazy, unpaired_dataset

    d = config.data
    if d.train:
        train_pairs, val_pairs = load_pairs(d, config.run.seed)
    else:
        train_pairs, val_pairs = [], (find_pairs(d.val, d.layout) if d.val else [])
    sec = getattr(config, section)
    clean = [p for folder in sec.clean if folder for p in find_clean_depth(folder)]
    if train_pairs:
        cache = d.depth_cache or os.path.join(config.run.out_dir, "depth_cache")
        clean += prepare_depth_maps(train_pairs, cache)
    if not clean:
        raise ConfigError(f"{config.trainer.name} needs clean images with depth: set {section}.clean (folders "
                          "with <stem>_depth.png) and/or data.train (paired folders: clear images, depth "
                          "recovered from the pairs)")
    val_scenes = {p.scene for p in val_pairs}
    leaked = sorted({p.scene for p in clean} & val_scenes) if not d.val else []
    if leaked:
        raise ConfigError(f"validation scene(s) {leaked} are also clean training images")
    hazy = list_hazy([f for f in getattr(sec, "hazy", ()) if f])
    log(f"{section} data: {len(clean)} clean images with depth, {len(hazy)} real hazy images"
        + ("" if hazy or not hasattr(sec, "hazy") else " (no hazy folder: clean branch only)")
        + f", {len(val_pairs)} validation pairs")
    steps = config.optim.steps_per_epoch or math.ceil(len(clean) / d.batch_size)
    train_ds = unpaired_dataset(clean, hazy, d.batch_size, crop_size=d.crop_size or None, augment=d.augment,
                                seed=config.run.seed, cache=d.cache)
    val_ds = validation_dataset(val_pairs) if val_pairs else None
    return train_ds, val_ds, steps


def _mix_with_resynthesis(train_ds, train_pairs, config):
    """Mixes real pairs with ASM re-synthesised ones (depth from training scenes only)."""
    from keras_dehaze.data.resynthesis import prepare_depth_maps, resynthesized_dataset

    d = config.data
    cache = d.depth_cache or os.path.join(config.run.out_dir, "depth_cache")
    depth_pairs = prepare_depth_maps(train_pairs, cache)
    log(f"re-synthesis: {len(depth_pairs)} scene depth maps in {cache}; {d.synthetic_fraction:.0%} of batches "
        f"hazed anew with A ~ U{tuple(d.synthetic_airlight)} +- {d.synthetic_airlight_jitter} per channel, "
        f"beta ~ U{tuple(d.synthetic_beta)}, depth offset ~ U{tuple(d.synthetic_depth_offset)}, "
        f"non-uniform strength {d.synthetic_nonuniform}, depth scale ~ U{tuple(d.synthetic_depth_scale)}, "
        f"noise std ~ U(0, {d.synthetic_noise})")
    synthetic = resynthesized_dataset(
        depth_pairs, d.batch_size, d.crop_size, seed=config.run.seed,
        airlight=tuple(d.synthetic_airlight), beta=tuple(d.synthetic_beta),
        airlight_jitter=d.synthetic_airlight_jitter, depth_offset=tuple(d.synthetic_depth_offset),
        nonuniform=d.synthetic_nonuniform, depth_scale=tuple(d.synthetic_depth_scale), noise=d.synthetic_noise,
    )
    f = d.synthetic_fraction
    return tf.data.Dataset.sample_from_datasets([train_ds, synthetic], weights=[1 - f, f], seed=config.run.seed)


def _evaluate(trainer, val_ds):
    scores = trainer.evaluate(val_ds, return_dict=True, verbose=0)
    return {f"val_{k}": float(v) for k, v in scores.items() if k in ("psnr", "ssim")}


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)
