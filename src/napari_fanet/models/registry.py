"""Named model configurations and ``build_model``.

A :class:`ModelConfig` holds everything needed to rebuild a network, so a checkpoint that stores
``config.to_dict()`` can be turned back into a model from the file alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from napari_fanet.models.unet import UNet3d

TASKS = ("segmentation", "qsm")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build one network.

    Parameters
    ----------
    name : str
        Registry name the configuration started from (for example ``"fanet-seg"``).
    task : {"segmentation", "qsm"}
        What the network predicts.
    in_channels, out_channels : int
        Input and output channels.
    features : tuple of 5 int
        Channels per resolution level, finest first.
    norm : str or (str, dict)
        Normalisation of the backbone's conv blocks.
    act : str
        Activation of the backbone's conv blocks.
    dropout : float
        Dropout after the bottleneck stage.
    attention : {None, "fa", "sa", "da", "rsa"}
        Bottleneck attention block.
    attention_kwargs : dict
        Keyword arguments of the attention block (for FA, for example ``{"scale": "sqrt"}``).
    attention_levels : tuple of int
        Resolution levels with an attention block: ``(4,)``, the bottleneck (default), or finer
        levels such as ``(2,)`` (1/4 resolution) or ``(3, 4)``; see :class:`UNet3d`.
    skip_gates : bool
        Attention gates on the three deepest skips (AG-Net).
    pad_mode : str
        Padding used to reach a multiple of 16 voxels per axis.
    """

    name: str
    task: str
    in_channels: int
    out_channels: int
    features: tuple[int, ...] = (8, 16, 32, 64, 128)
    norm: Any = "batch"
    act: str = "relu"
    dropout: float = 0.0
    attention: str | None = None
    attention_kwargs: dict[str, Any] = field(default_factory=dict)
    attention_levels: tuple[int, ...] = (4,)
    skip_gates: bool = False
    pad_mode: str = "constant"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        if isinstance(self.norm, list):  # a (name, kwargs) pair that went through a file
            object.__setattr__(self, "norm", tuple(self.norm))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (safe for ``torch.load(weights_only=True)`` and JSON)."""
        out = dataclasses.asdict(self)
        out["features"] = list(self.features)
        out["attention_levels"] = list(self.attention_levels)
        out["norm"] = list(self.norm) if isinstance(self.norm, tuple) else self.norm
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        if not isinstance(data, dict):
            raise TypeError(f"a model config must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown model config keys {unknown}; expected a subset of {sorted(known)}"
            )
        return cls(**data)


_SEG = {
    "task": "segmentation",
    "in_channels": 3,
    "out_channels": 2,
    "norm": ("group", {"num_groups": 8}),
}
_QSM = {"task": "qsm", "in_channels": 1, "out_channels": 1, "norm": "batch"}

#: The named configurations ``build_model`` knows.
MODEL_CONFIGS: dict[str, ModelConfig] = {
    "unet-seg": ModelConfig("unet-seg", **_SEG),
    "fanet-seg": ModelConfig("fanet-seg", **_SEG, attention="fa"),
    "da-seg": ModelConfig("da-seg", **_SEG, attention="da"),
    "rsa-seg": ModelConfig("rsa-seg", **_SEG, attention="rsa"),
    "sa-seg": ModelConfig(
        "sa-seg", **_SEG, attention="sa", attention_kwargs={"norm": _SEG["norm"]}
    ),
    "ag-seg": ModelConfig("ag-seg", **_SEG, skip_gates=True),
    "qsmnet": ModelConfig("qsmnet", **_QSM),
    "fanet-qsm": ModelConfig("fanet-qsm", **_QSM, attention="fa"),
    "da-qsm": ModelConfig("da-qsm", **_QSM, attention="da"),
    "rsa-qsm": ModelConfig("rsa-qsm", **_QSM, attention="rsa"),
    "sa-qsm": ModelConfig("sa-qsm", **_QSM, attention="sa"),
}


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The named configuration with ``overrides`` applied (see :class:`ModelConfig` fields)."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODEL_CONFIGS)}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"name", "task"}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"unknown override(s) {bad} for {name!r}; allowed: {sorted(fields)}")
    return dataclasses.replace(MODEL_CONFIGS[name], **overrides)


def model_from_config(config: ModelConfig | dict[str, Any]) -> nn.Module:
    """Build the network described by ``config``; the result keeps it in ``model.config``."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    if not isinstance(config, ModelConfig):
        raise TypeError(f"a model config must be a dict, got {type(config).__name__}")
    model = UNet3d(
        config.in_channels,
        config.out_channels,
        config.features,
        config.norm,
        config.act,
        config.dropout,
        attention=config.attention,
        attention_kwargs=config.attention_kwargs,
        attention_levels=config.attention_levels,
        skip_gates=config.skip_gates,
        pad_mode=config.pad_mode,
    )
    model.config = config
    return model


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered network, for example ``build_model("fanet-seg", features=(8,) * 5)``.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_CONFIGS` (``unet-seg``, ``fanet-seg``, ``da-seg``, ``rsa-seg``,
        ``sa-seg``, ``ag-seg``, ``qsmnet``, ``fanet-qsm``, ``da-qsm``, ``rsa-qsm``, ``sa-qsm``).
    **overrides
        Replacements for :class:`ModelConfig` fields (``features``, ``attention_kwargs``...).

    Returns
    -------
    torch.nn.Module
        The network, with its :class:`ModelConfig` in ``model.config``.
    """
    return model_from_config(model_config(name, **overrides))
