"""Custom layers, all registered as Keras-serializable under the package name 'keras_dehaze'."""

from keras_dehaze.layers.attention import FABlock
from keras_dehaze.layers.cpmm import CPMM, SpectralAttention, SpectralTransformerBlock
from keras_dehaze.layers.deformable_conv import DeformableConv2D
from keras_dehaze.layers.lkd import ChannelScale, DepthToSpace, ImageLayerNorm
from keras_dehaze.layers.dehazeformer import DehazeFormerBlock, RescaleNorm, WindowAttention
from keras_dehaze.layers.mixup import AdaptiveMixup
from keras_dehaze.layers.nafblock import LayerNorm2D, NAFBlock, SimpleGate
from keras_dehaze.layers.padding import ClipAtInference, CropLike, PadToMultiple, ReflectionPad2D
from keras_dehaze.layers.unfolding import ConstantMap, SceneStep, TransmissionStep

__all__ = [
    "AdaptiveMixup",
    "CPMM",
    "ChannelScale",
    "ClipAtInference",
    "ConstantMap",
    "CropLike",
    "DeformableConv2D",
    "DepthToSpace",
    "DehazeFormerBlock",
    "FABlock",
    "ImageLayerNorm",
    "LayerNorm2D",
    "NAFBlock",
    "PadToMultiple",
    "ReflectionPad2D",
    "RescaleNorm",
    "SceneStep",
    "SimpleGate",
    "SpectralAttention",
    "SpectralTransformerBlock",
    "TransmissionStep",
    "WindowAttention",
]
