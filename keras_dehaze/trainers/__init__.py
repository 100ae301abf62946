"""Training strategies: ``Trainer`` subclasses (``keras.Model``s with custom ``train_step``s)
registered by name for ``trainer.name`` (``keras_dehaze.trainers.base``).

The built-in strategies register themselves when their modules are imported below; a new
strategy adds its module here (explicit imports, no folder scanning).
"""

from keras_dehaze.trainers.base import CR_SETTINGS, TRAINERS, Trainer, get_trainer, register_trainer
from keras_dehaze.trainers.paired import PairedTrainer  # "contrastive": L1 + cr_weight x CR
from keras_dehaze.trainers.rehazy import RehazyTrainer  # "rehazy": unpaired clean + hazy/rehazy branches
from keras_dehaze.trainers.corun_pretrain import CORUNPretrainTrainer  # "corun_pretrain": clean + depth, hazed on the fly
from keras_dehaze.trainers.colabator import ColabatorTrainer  # "colabator": mean teacher on real hazy images
from keras_dehaze.trainers.distill import DistillTrainer  # "distill": a frozen teacher labels every input

__all__ = ["CORUNPretrainTrainer", "CR_SETTINGS", "ColabatorTrainer", "DistillTrainer", "PairedTrainer", "RehazyTrainer",
           "TRAINERS", "Trainer", "get_trainer", "register_trainer"]
