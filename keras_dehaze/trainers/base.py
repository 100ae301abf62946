"""The trainer interface: what ``keras_dehaze.experiment`` needs from a training strategy, and
the registry that maps ``trainer.name`` to the strategy's class.

A strategy is a ``keras.Model`` that wraps the network being trained (``self.dehazer``: the
only network written to ``latest.keras`` / ``best.keras``) and implements ``train_step`` and
``test_step``. ``experiment.run`` drives every strategy the same way, through these hooks::

    cls = get_trainer(config.trainer.name)           # ConfigError listing the known names
    config = cls.resolve_config(config)              # strategy defaults of unset trainer.* keys
    cls.check_config(config)                         # before anything is created
    # + the folders of data.train, data.val and cls.folder_settings must exist
    data = cls.load_data(config, strategy)           # before the network is built
    trainer = cls.from_experiment_config(config, dehazer)
    train_ds, callbacks = trainer.prepare_experiment(config, data.train, strategy)
    log(trainer.describe())
    trainer.fit(train_ds, validation_data=data.val, callbacks=[..., *callbacks, ...])

``fit`` logs what ``train_step`` returns (``train_metrics``) and ``val_<name>`` for what
``test_step`` returns (``test_metrics``); ``val_psnr`` selects ``best.keras``.

Adding a strategy: one module in ``keras_dehaze/trainers/`` with a ``Trainer`` subclass
decorated with ``@register_trainer("name")``, its import in ``trainers/__init__.py``, and, if
it has settings of its own, a section in ``keras_dehaze/config.py`` (named by
``config_section``). docs/training.md walks through an example.
"""

import dataclasses

from keras_dehaze.backend import keras
from keras_dehaze.config import ConfigError, TrainerConfig
from keras_dehaze.data.training_data import paired_training_data

TRAINERS = {}  # trainer.name -> Trainer subclass; filled by @register_trainer

# The shared `trainer` keys of the contrastive-regularization term (a strategy that adds the term
# reads these; the contrastive strategy also reads cr_start_step). See common.build_contrastive.
CR_SETTINGS = ("cr_weight", "features", "feature_weights", "num_negatives", "positive_only")


def register_trainer(name):
    """Class decorator: makes the strategy available as ``trainer.name: <name>``.

    Example:
        >>> @register_trainer("l1_only")
        ... class L1Trainer(Trainer):
        ...     ...
    """

    def register(cls):
        if not (isinstance(cls, type) and issubclass(cls, keras.Model)):
            raise TypeError(f"register_trainer({name!r}) needs a keras.Model subclass (a Trainer), got {cls!r}")
        known = TRAINERS.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"trainer name {name!r} is taken by {known.__module__}.{known.__qualname__}")
        TRAINERS[name] = cls
        return cls

    return register


def get_trainer(name):
    """The strategy registered as ``name``.

    Raises:
        ConfigError: no such strategy; the message lists the registered names.
    """
    try:
        return TRAINERS[name]
    except KeyError:
        raise ConfigError(f"unknown trainer.name {name!r}; known: {', '.join(sorted(TRAINERS))}") from None


class Trainer(keras.Model):
    """Base class of the training strategies; see the module docstring for how they are driven.

    A subclass implements ``train_step`` and ``test_step`` (each returning
    ``self.metric_results(<names>)``), lists its ``keras.metrics.Mean`` trackers in ``metrics``,
    and overrides the hooks it needs; every hook has a default that suits a paired strategy with
    no settings of its own. Frozen helper networks (teachers, feature extractors) are kept out
    of Keras tracking (``object.__setattr__``) so that they stay out of the training backups.

    Args:
        dehazer: the network being trained, a ``keras.Model`` mapping hazy RGB in [0, 1] to
            one restored image or a list of scales (full resolution first).

    Example:
        >>> @register_trainer("l1_only")
        ... class L1Trainer(Trainer):
        ...     train_metrics = ("loss",)
        ...     test_metrics = ("psnr",)
        ...
        ...     def __init__(self, dehazer, **kwargs):
        ...         super().__init__(dehazer, **kwargs)
        ...         self.loss_tracker = keras.metrics.Mean("loss")
        ...         self.psnr_tracker = keras.metrics.Mean("psnr")
        ...
        ...     @property
        ...     def metrics(self):
        ...         return [self.loss_tracker, self.psnr_tracker]
        ...
        ...     def train_step(self, data):
        ...         ...  # gradient step on average(per_example_l1(...))
        ...         return self.metric_results(self.train_metrics)
    """

    #: Name of the ``Config`` section with this strategy's own settings (None: it has none).
    config_section = None
    #: Keys ("section.key") of config values that name data folders or globs; they must exist
    #: before anything is created (``data.train`` and ``data.val`` are always checked).
    folder_settings = ()
    #: Keys of the shared ``trainer`` section (besides ``name``) this strategy reads; setting
    #: another one is a ConfigError (it would be ignored).
    trainer_settings = ()
    #: This strategy's defaults of ``trainer`` keys a config leaves unset (None).
    trainer_defaults = {}
    #: Names of the values ``train_step`` returns (the training columns of log.csv).
    train_metrics = ("loss",)
    #: Names of the values ``test_step`` returns (``val_<name>`` in the logs; ``val_psnr``
    #: selects best.keras, and the run summary reports ``psnr`` and ``ssim``).
    test_metrics = ("psnr", "ssim")

    def __init__(self, dehazer, **kwargs):
        super().__init__(**kwargs)
        self.dehazer = dehazer

    def call(self, inputs, training=False):
        return self.dehazer(inputs, training=training)

    def metric_results(self, names):
        """``{name: result}`` of the trackers in ``metrics`` with these names (a ``train_step`` /
        ``test_step`` return value)."""
        trackers = {m.name: m for m in self.metrics}
        missing = [n for n in names if n not in trackers]
        if missing:
            raise KeyError(f"{type(self).__name__} has no metric {missing} (it has {sorted(trackers)})")
        return {name: trackers[name].result() for name in names}

    def describe(self):
        """One or more lines for the run log: the loss and what is switched on or off."""
        return f"{type(self).__name__}"

    # ------------------------------------------------------------------ config
    @classmethod
    def resolve_config(cls, config):
        """``config`` with the ``trainer`` keys it leaves unset filled from ``trainer_defaults``."""
        trainer = config.trainer
        filled = {key: value for key, value in cls.trainer_defaults.items() if getattr(trainer, key) is None}
        if not filled:
            return config
        return dataclasses.replace(config, trainer=dataclasses.replace(trainer, **filled))

    @classmethod
    def check_config(cls, config):
        """Raises ConfigError for a setting this strategy cannot use, before anything is
        created. The default refuses ``trainer`` keys outside ``trainer_settings`` that are set
        to something other than their default (a weight of 0 counts as not set); subclasses
        add their own checks and call ``super().check_config(config)``."""
        defaults = TrainerConfig()
        for f in dataclasses.fields(TrainerConfig):
            if f.name == "name" or f.name in cls.trainer_settings:
                continue
            value = getattr(config.trainer, f.name)
            if value == getattr(defaults, f.name) or (f.name == "cr_weight" and value == 0):
                continue
            reads = ", ".join(f"trainer.{k}" for k in cls.trainer_settings) or "no trainer.* key"
            raise ConfigError(f"trainer.{f.name} is set ({value!r}) but trainer.name {config.trainer.name!r} does "
                              f"not use it (it reads {reads}); remove it")

    @classmethod
    def from_experiment_config(cls, config, dehazer):
        """Builds the strategy for ``dehazer`` from an experiment ``Config``. Missing
        pretrained helpers (features, teachers) must raise here, before training starts. The
        default calls ``cls(dehazer)``."""
        return cls(dehazer)

    # ------------------------------------------------------------------ data and callbacks
    @classmethod
    def load_data(cls, config, strategy):
        """A ``TrainingData`` (endless training dataset, validation dataset of (hazy, clear)
        pairs or None, steps per epoch), built before the network. The default: the pairs of
        ``data.train`` (+ re-synthesis) and the held-out validation pairs
        (``keras_dehaze.data.training_data``)."""
        return paired_training_data(config, strategy)

    def prepare_experiment(self, config, train_ds, strategy=None):
        """(training dataset, extra callbacks) for ``fit``, once the strategy is built: e.g. a
        dataset that also reads the strategy's state (a label pool) and the callbacks that
        update that state. The callbacks run before the checkpoint and CSV logger, so they may
        add keys to the epoch logs. The default: ``(train_ds, [])``."""
        return train_ds, []


__all__ = ["CR_SETTINGS", "TRAINERS", "Trainer", "get_trainer", "register_trainer"]
