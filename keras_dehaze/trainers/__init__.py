"""Training strategies as ``keras.Model`` subclasses with custom ``train_step``s."""

from keras_dehaze.trainers.colabator import ColabatorTrainer
from keras_dehaze.trainers.corun_pretrain import CORUNPretrainTrainer
from keras_dehaze.trainers.distill import DistillTrainer
from keras_dehaze.trainers.paired import PairedTrainer
from keras_dehaze.trainers.rehazy import RehazyTrainer

TRAINERS = {
    "contrastive": PairedTrainer,  # L1 + beta * CR (cr_weight 0 gives plain L1)
    "rehazy": RehazyTrainer,  # unpaired dual-branch clean + hazy/rehazy (config section `rehazy`)
    "colabator": ColabatorTrainer,  # mean-teacher fine-tuning on real hazy images (config section `colabator`)
    "corun_pretrain": CORUNPretrainTrainer,
    "distill": DistillTrainer,  # a frozen pretrained teacher labels every input (config section `distill`)  # CORUN on clean + depth hazed on the fly (config section `corun`)
}

__all__ = ["CORUNPretrainTrainer", "ColabatorTrainer", "DistillTrainer", "PairedTrainer", "RehazyTrainer", "TRAINERS"]
