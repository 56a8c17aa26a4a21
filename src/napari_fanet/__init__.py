"""napari-fanet: Folded Attention (FA-Net) for 3D MRI, as a napari plugin and a GUI-free core.

The package root exports the version and, lazily, the core names, so that napari can read the
plugin manifest without importing PyTorch. It never imports Qt, magicgui or napari.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY_CORE_NAMES = {
    "FoldedAttention3d": "napari_fanet.models",
    "build_model": "napari_fanet.models",
    "load_checkpoint": "napari_fanet.models",
    "save_checkpoint": "napari_fanet.models",
    "get_task": "napari_fanet.tasks",
}

__all__ = ["__version__", *_LAZY_CORE_NAMES]


def __getattr__(name: str) -> Any:
    """Import core names on first use (keeps ``import napari_fanet`` free of torch)."""
    module_name = _LAZY_CORE_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'napari_fanet' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
