"""Models: Folded Attention, the baseline attentions, the U-Net backbones and the registry."""

from .attention_gate import AttentionGate3d
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .dual_attention import DualAttention3d
from .folded_attention import FoldedAttention3d
from .inspection import AffinityCapture, AffinityRecord, capture_affinities
from .nonlocal_attention import NonLocal3d
from .registry import MODEL_CONFIGS, ModelConfig, build_model, model_config, model_from_config
from .slice_wise_attention import SliceWiseAttention3d
from .unet import UNet3d

__all__ = [
    "MODEL_CONFIGS",
    "AffinityCapture",
    "AffinityRecord",
    "AttentionGate3d",
    "DualAttention3d",
    "FoldedAttention3d",
    "ModelConfig",
    "NonLocal3d",
    "SliceWiseAttention3d",
    "UNet3d",
    "build_model",
    "capture_affinities",
    "load_checkpoint",
    "model_config",
    "model_from_config",
    "read_checkpoint",
    "save_checkpoint",
]
