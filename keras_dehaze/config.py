"""Experiment configs: YAML -> frozen, typed dataclasses, with ``--set key=value`` overrides.

Unknown keys and wrong types are errors that name the key, so a typo never trains silently
with a default.

Sections: ``model``, ``data``, ``optim`` and ``run`` for every run; ``trainer`` names the
training strategy (``trainer.name``) and holds the settings several strategies share (the
contrastive-regularization term); each strategy with settings of its own has its section
(``rehazy``, ``colabator``, ``corun``, ``distill``). A setting lives in one place only.
Keys of the older layout (``colabator.cr_weight``, ``corun.features``, ...; ``MOVED_KEYS``)
are moved to their place by ``load_config``, with an ``ObsoleteConfigKeyWarning``.
"""

import dataclasses
import typing
import warnings
from dataclasses import dataclass, field
from typing import Optional

import yaml


class ConfigError(ValueError):
    pass


class ObsoleteConfigKeyWarning(UserWarning):
    """A config used a key of the older layout; ``load_config`` moved (or dropped) it."""


@dataclass(frozen=True)
class ModelConfig:
    name: str = "aecrnet"
    args: dict = field(default_factory=dict)  # keyword arguments of the model builder
    pretrained: str = ""  # a .keras checkpoint of the same architecture, or a bundled name (aecrnet_default)


@dataclass(frozen=True)
class DataConfig:
    train: tuple = ()  # paired folder(s) (RESIDE, {GT,hazy} or NTIRE layout)
    val: str = ""  # a separate paired folder; or hold out scenes of `train` below
    layout: str = "auto"
    val_scenes: tuple = ()  # scene ids (clear-image stems) held out from `train`
    val_fraction: float = 0.0  # or a fraction of the scenes, chosen with run.seed
    crop_size: int = 240
    batch_size: int = 16
    augment: bool = True
    cache: bool = False  # keep decoded images in memory (small datasets)
    # Physics re-synthesis (keras_dehaze.data.resynthesis): this fraction of the training
    # batches is hazed anew with the ASM from depth recovered from the training pairs.
    synthetic_fraction: float = 0.0
    synthetic_airlight: tuple = (0.7, 1.0)
    synthetic_beta: tuple = (0.3, 2.5)  # on depth normalised to [0, 1]
    synthetic_airlight_jitter: float = 0.025  # per-channel +-: coloured (e.g. bluish) airlight
    # Dense and non-homogeneous haze (real Dense-Haze / NH-HAZE look like this): the haze depth
    # is (offset + d) * exp(nonuniform * n), offset ~ U(synthetic_depth_offset) per image and n a
    # smooth random field in [-1, 1], so near objects are hazed too and the density varies in patches.
    synthetic_depth_offset: tuple = (0.0, 0.0)
    synthetic_nonuniform: float = 0.0
    # The depth range is scaled by U(synthetic_depth_scale) per image before the offset: below 1
    # the haze is nearly uniform over the scene (Dense-Haze: a haze machine in a few metres).
    synthetic_depth_scale: tuple = (1.0, 1.0)
    synthetic_noise: float = 0.0  # Gaussian sensor noise, std ~ U(0, this) per hazed image
    # Folders of clean photos with depth maps (training/prepare_clean_depth.py, e.g. from PyDNet++)
    # that re-synthesis hazes too, beside the training scenes: clean photos become pairs.
    synthetic_clean: tuple = ()
    depth_cache: str = ""  # default: <run.out_dir>/depth_cache


@dataclass(frozen=True)
class TrainerConfig:
    """The training strategy and the settings several strategies share.

    ``name`` is a key of ``keras_dehaze.trainers.TRAINERS`` (contrastive, rehazy, colabator,
    corun_pretrain, distill, or one registered with ``register_trainer``). The other keys
    configure the contrastive-regularization (CR) term of AECR-Net, which the contrastive,
    colabator, corun_pretrain and distill strategies add to their losses; a strategy refuses the
    keys it does not read (each trainer's ``trainer_settings``). Unset (null) keys take the
    strategy's default (its ``trainer_defaults``); the run's config.yaml records the values used.
    """

    name: str = "contrastive"
    # Weight of the CR term (beta of AECR-Net); 0: off, no pretrained features needed. Unset:
    # the strategy's default (contrastive 0.1, colabator 0.1, corun_pretrain 0.2, distill 0).
    cr_weight: Optional[float] = None
    num_negatives: int = 1  # 1:r positives to negatives
    positive_only: bool = False  # the "CR*" ablation (perceptual loss)
    cr_start_step: int = 0  # L1-only warm-up steps before CR (needed by global-residual nets; contrastive only)
    # "vgg19" (ImageNet, the papers), "hed_vgg16" or "imagenet_squeezenet" (offline). Unset: the
    # strategy's default (vgg19; corun_pretrain hed_vgg16).
    features: Optional[str] = None
    # vgg19: "" or "imagenet" (download) or a local .h5 file; imagenet_squeezenet: the path of
    # squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5 ("": $KERAS_DEHAZE_SQUEEZENET or ~/.keras/models/)
    feature_weights: str = ""


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4
    beta_1: float = 0.9
    beta_2: float = 0.999
    schedule: str = "cosine"  # "cosine" (annealed to 0 over all steps) or "constant"
    epochs: int = 100
    steps_per_epoch: int = 0  # 0: one pass over the training pairs
    clipnorm: float = 0.0  # 0: no gradient clipping
    # > 0: keep an exponential moving average of the weights (Polyak averaging) with this
    # momentum; validation, best.keras and latest.keras use the average. 0: off. With no bias
    # correction the starting weights keep a share momentum**steps: take 0.99 for runs of about
    # 1,000 steps, 0.999 for 10,000 and more.
    ema: float = 0.0


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "runs/experiment"
    seed: int = 0
    strategy: str = "default"  # "default", "mirrored", "multi_worker" (keras_dehaze.distribute)
    backup_every_steps: int = 0  # 0: back up at each epoch end; N: also every N steps
    tensorboard: bool = True
    verbose: int = 1  # Keras fit verbosity (1: progress bar)


@dataclass(frozen=True)
class RehazyConfig:
    """Unpaired Rehazy training (trainer.name: rehazy); the Rehazy paper."""

    clean: tuple = ()  # folder(s) of clean images with <stem>_depth.png beside (or a sibling depth/)
    hazy: tuple = ()  # folder(s) of real hazy images (no ground truth); empty: clean branch only
    # data.train pairs (if any) also feed the clean branch: their clear images, with depth
    # recovered from the pair (validation scenes excluded); their hazy images are not used.
    preset: str = "indoor"  # "indoor" or "outdoor" ranges; explicit ranges below override
    airlight: tuple = ()  # [low, high] of A for the clean branch
    beta: tuple = ()  # [low, high] of beta (depth normalised to [0, 1])
    delta_beta: tuple = ()  # [low, high] of the extra scattering of rehazy generation (Eq. 6)
    clean_only_steps: int = 0  # optimizer steps before the hazy branch starts (paper 3e5)
    w_depth: float = 0.01
    w_sem: float = 0.01
    # "dcp_prior", "pydnet" (PyDNet++ .tflite from $KERAS_DEHAZE_PYDNET or ~/.keras/models/, or its
    # path: replayed in TF ops, so differentiable: depth term and d0; with depth_loss "never" run by
    # LiteRT for d0 only), a depth-model path (SavedModel/.keras/.tflite) or "none"
    depth: str = "dcp_prior"
    depth_loss: str = "auto"  # "auto" (on for depth networks, off for the DCP prior), "always", "never"
    depth_output: str = "depth"  # the model predicts "depth" or "disparity" (Depth Anything)
    depth_input_size: tuple = ()  # [H, W] the depth model takes (e.g. [518, 518])
    depth_mean: tuple = ()  # input normalisation of the depth model, e.g. ImageNet mean/std
    depth_std: tuple = ()
    semantic: str = "hed_vgg16"  # "hed_vgg16"/"vgg" (CLIP substitute), "vgg19", an encoder path, "none"
    semantic_input_size: tuple = ()
    semantic_mean: tuple = ()
    semantic_std: tuple = ()
    semantic_temperature: float = 0.1  # softmax(l2_normalize(embedding) / T) before the KL


@dataclass(frozen=True)
class ColabatorConfig:
    """Colabator fine-tuning on real hazy images (trainer.name: colabator); Fang et al., NeurIPS 2024."""

    real: tuple = ()  # folder(s) of real hazy images (no ground truth)
    real_size: int = 256  # real images are resized to real_size x real_size (reference: 256)
    real_batch_size: int = 0  # real images per step; 0: data.batch_size
    pool_dir: str = ""  # optimal label pool; default <run.out_dir>/label_pool
    refresh_every: int = 100  # optimizer steps between teacher pseudo-label refreshes
    refresh_chunk: int = 0  # real images per refresh, round robin; 0: all
    ema_rate: float = 0.999  # teacher = ema_rate * teacher + (1 - ema_rate) * student
    grid: int = 8  # N x N trust-weight patches (reference: 32 px blocks on 256 px)
    trust_temperature: float = 4.0  # w = 2 sigmoid(T (s - mean s)), s = (1 - norm D) norm Q per patch
    density: str = "dark_channel"  # haze density scorer (lower = clearer)
    density_window: int = 7  # dark-channel window in pixels
    quality: str = "brisque"  # no-reference quality scorer (higher = better: 100 - BRISQUE)
    supervised_weight: float = 1.0  # L1 on data.train pairs (+ re-synthesis)
    pseudo_weight: float = 1.0  # trust-weighted L1 to the pool label
    # the contrastive-perceptual term on the student's view: trainer.cr_weight / trainer.features
    randaugment_ops: int = 2  # n of RandAugment for the student view


@dataclass(frozen=True)
class CORUNConfig:
    """CORUN pretraining on clean images hazed on the fly (trainer.name: corun_pretrain); Fang et al., NeurIPS 2024."""

    clean: tuple = ()  # folder(s) of clean images with <stem>_depth.png (training/prepare_clean_depth.py)
    # data.train pairs (if any) add their clear images, with depth recovered from the pair
    # (validation scenes excluded); their hazy images are not used.
    asm_weight: float = 0.01  # L1(J T + 1 - T, P), T = T^_K of the last stage (reference 0.01)
    # the contrastive-perceptual term: trainer.cr_weight (default here 0.2, the reference) and
    # trainer.features (default here hed_vgg16; the reference uses vgg19)
    degrade: bool = True  # reference gamma / noise / JPEG degradations of the hazy input


@dataclass(frozen=True)
class DistillConfig:
    """Distillation from a frozen pretrained teacher (trainer.name: distill)."""

    teacher: str = ""  # a preset name (e.g. lkdnet_s_mixed) or a .keras file
    hazy: tuple = ()  # folder(s)/globs of images without ground truth, labelled by the teacher
    unlabelled_fraction: float = 0.5  # share of batches drawn from `hazy` (when set)
    gt_weight: float = 0.5  # on pairs: gt_weight x L1(GT) + (1 - gt_weight) x L1(teacher)
    # the contrastive term on the student output: trainer.cr_weight (default here 0: off)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    rehazy: RehazyConfig = field(default_factory=RehazyConfig)
    colabator: ColabatorConfig = field(default_factory=ColabatorConfig)
    corun: CORUNConfig = field(default_factory=CORUNConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


# Keys of the older layout, where the colabator, corun and distill sections repeated settings of
# the contrastive term: old key -> (its place now, the trainer.name that read the old key).
MOVED_KEYS = {
    "colabator.cr_weight": ("trainer.cr_weight", "colabator"),
    "distill.cr_weight": ("trainer.cr_weight", "distill"),
    "corun.contrastive_weight": ("trainer.cr_weight", "corun_pretrain"),
    "corun.features": ("trainer.features", "corun_pretrain"),
    "corun.feature_weights": ("trainer.feature_weights", "corun_pretrain"),
}


def migrate(raw, source="config"):
    """Moves the keys of the older layout (``MOVED_KEYS``) in a raw config dict to their place.

    The old layout had the strategy named by its old key read that key and ignore the shared
    one (a colabator run read ``colabator.cr_weight``, not ``trainer.cr_weight``), so:
    - when ``trainer.name`` is that strategy, the old key's value becomes the new key's (it was
      the value in use), replacing what the new key held;
    - otherwise no strategy read the old key, and it is dropped.
    Either way an ``ObsoleteConfigKeyWarning`` names what happened. Returns ``raw`` (changed in
    place); run configs written since (``config.yaml``) use the current layout.
    """
    trainer = raw.get("trainer")
    name = trainer.get("name", TrainerConfig.name) if isinstance(trainer, dict) else TrainerConfig.name
    notes = []
    for old, (new, reader) in MOVED_KEYS.items():
        section, key = old.split(".")
        values = raw.get(section)
        if not isinstance(values, dict) or key not in values:
            continue
        value = values.pop(key)
        if name != reader:
            notes.append(f"{old} dropped (only trainer.name {reader} read it)")
            continue
        new_section, new_key = new.split(".")
        target = raw.setdefault(new_section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"cannot move {old} to {new}: '{new_section}' is not a section")
        replaced = f", replacing {new_key}: {target[new_key]!r}, which {reader} did not read" \
            if new_key in target and target[new_key] != value else ""
        target[new_key] = value
        notes.append(f"{old}: {value!r} is now {new}{replaced}")
    if notes:
        warnings.warn(f"{source} uses keys of the older layout: {'; '.join(notes)}. Write them in the "
                      "trainer section (docs/training.md, 'Shared settings').", ObsoleteConfigKeyWarning,
                      stacklevel=3)
    return raw


def load_config(path=None, overrides=(), schema=Config):
    """Reads a YAML file (or nothing), applies ``key.sub=value`` overrides and moves keys of
    the older layout (``migrate``)."""
    raw = {}
    if path:
        try:
            with open(path) as f:
                raw = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping, got {type(raw).__name__}")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        _set_path(raw, key.strip().split("."), yaml.safe_load(value))
    if schema is Config:
        migrate(raw, source=f"config file {path}" if path else "config")
    return from_dict(schema, raw)


def from_dict(cls, data, prefix=""):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f" in section '{prefix}'" if prefix else ""
        names = [prefix + "." * bool(prefix) + k for k in unknown]
        moved = [f"{n} is now {MOVED_KEYS[n][0]}" for n in names if n in MOVED_KEYS]
        raise ConfigError(f"unknown config key(s){where}: {', '.join(names)}; known: {', '.join(sorted(fields))}"
                          + (f" ({'; '.join(moved)}; load_config moves such keys)" if moved else ""))
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kind = hints[name]
        values[name] = from_dict(kind, value, key) if dataclasses.is_dataclass(kind) else _coerce(kind, value, key)
    return cls(**values)


def to_dict(config):
    return dataclasses.asdict(config)


def _coerce(kind, value, key):
    if typing.get_origin(kind) is typing.Union:  # Optional[X]: None (or "") means unset
        inner = next(k for k in typing.get_args(kind) if k is not type(None))
        if value is None or value == "":
            return None
        return _coerce(inner, value, key)
    if kind is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is tuple and isinstance(value, (list, tuple)):
        return tuple(str(v) if not isinstance(v, (int, float)) else v for v in value)
    if kind is tuple and isinstance(value, (str, int)):
        return (value,) if value != "" else ()  # `key: ""` means none, not one empty path
    if kind is dict and value is None:
        return {}
    if kind is str and value is None:
        return ""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"config key '{key}' must be {kind.__name__}, got {value!r} ({type(value).__name__})")


def _set_path(tree, keys, value):
    for k in keys[:-1]:
        node = tree.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {'.'.join(keys)}: '{k}' is not a section")
        tree = node
    tree[keys[-1]] = value
