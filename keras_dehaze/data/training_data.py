"""The training and validation data of an experiment, assembled from its ``Config``.

Two kinds, used by the trainers' ``load_data`` hook (``keras_dehaze.trainers.base``):

- ``paired_training_data``: the pairs of ``data.train`` (optionally mixed with ASM
  re-synthesised pairs, ``data.synthetic_fraction``, from the training scenes and from the clean
  photos with depth of ``data.synthetic_clean``), for the contrastive, colabator and distill
  strategies;
- ``clean_depth_training_data``: clean images with depth (a strategy section's ``clean``
  folders and the clear images of ``data.train`` pairs) and real hazy images (its ``hazy``
  folders, if it has them), for strategies that synthesise haze themselves (rehazy,
  corun_pretrain).

Validation is always (hazy, clear) pairs that hold out whole scenes (``data.val``, or
``data.val_scenes`` / ``data.val_fraction`` of ``data.train``).
"""

import math
import os
from collections import namedtuple

from keras_dehaze.backend import tf
from keras_dehaze.config import ConfigError
from keras_dehaze.data.pairing import find_pairs, split_by_scene
from keras_dehaze.data.pipeline import paired_dataset, validation_dataset

TrainingData = namedtuple("TrainingData", ["train", "val", "steps_per_epoch"])
TrainingData.__doc__ = """(endless training dataset, validation dataset or None, optimizer steps per epoch)."""


def log(message):
    """One progress line of a training run (stdout, flushed)."""
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


def paired_training_data(config, strategy):
    """``TrainingData`` of the pairs of ``data.train`` (+ re-synthesis)."""
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
        train_ds = mix_with_resynthesis(train_ds, train_pairs, config)
    elif config.data.synthetic_clean:
        raise ConfigError("data.synthetic_clean is set but data.synthetic_fraction is 0: no batch would be "
                          "synthesised from those clean images (set data.synthetic_fraction, e.g. 0.3)")
    val_ds = validation_dataset(val_pairs) if val_pairs else None
    return TrainingData(train_ds, val_ds, steps)


def clean_depth_training_data(config, section):
    """``TrainingData`` of clean images + depth (``<section>.clean`` folders, and the clear
    images of data.train pairs with depth recovered from the pairs, validation scenes excluded)
    and real hazy images (``<section>.hazy``, if the section has it); batches
    ``((clean, depth), hazy)`` (``keras_dehaze.data.unpaired``)."""
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
    return TrainingData(train_ds, val_ds, steps)


def mix_with_resynthesis(train_ds, train_pairs, config):
    """Mixes real pairs with ASM re-synthesised ones (depth from training scenes only)."""
    from keras_dehaze.data.resynthesis import prepare_depth_maps, resynthesized_dataset
    from keras_dehaze.data.unpaired import find_clean_depth

    d = config.data
    cache = d.depth_cache or os.path.join(config.run.out_dir, "depth_cache")
    depth_pairs = prepare_depth_maps(train_pairs, cache)
    clean = [p for folder in d.synthetic_clean for p in find_clean_depth(folder)]
    if clean:
        log(f"re-synthesis also hazes {len(clean)} clean images with depth from {', '.join(d.synthetic_clean)}")
    depth_pairs += clean
    log(f"re-synthesis: {len(depth_pairs) - len(clean)} scene depth maps in {cache}; {d.synthetic_fraction:.0%} of batches "
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


__all__ = ["TrainingData", "clean_depth_training_data", "load_pairs", "log", "mix_with_resynthesis",
           "paired_training_data"]
