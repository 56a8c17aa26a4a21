"""Models: Folded Attention, the baseline attentions, the U-Net backbones and the registry.

Shapes here use the FA spec's tensor notation ``(B, C, D, H, W)``: D, H, W are the canonical
array axes X, Y, Z that the rest of the package names (arrays ``(X, Y, Z)`` in RAS+ canonical
orientation, network tensors ``(B, C, X, Y, Z)``).
"""

from napari_fanet.models.attention_gate import AttentionGate3d
from napari_fanet.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from napari_fanet.models.dual_attention import DualAttention3d
from napari_fanet.models.folded_attention import FoldedAttention3d
from napari_fanet.models.inspection import (
    AffinityCapture,
    AffinityRecord,
    attention_blocks,
    capture_affinities,
)
from napari_fanet.models.nonlocal_attention import NonLocal3d
from napari_fanet.models.registry import (
    MODEL_CONFIGS,
    ModelConfig,
    build_model,
    model_config,
    model_from_config,
)
from napari_fanet.models.slice_wise_attention import SliceWiseAttention3d
from napari_fanet.models.unet import UNet3d

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
    "attention_blocks",
    "build_model",
    "capture_affinities",
    "load_checkpoint",
    "model_config",
    "model_from_config",
    "read_checkpoint",
    "save_checkpoint",
]
