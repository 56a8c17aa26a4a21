"""Checkpoints that rebuild their model from the file alone, written atomically.

A checkpoint is a dict ``{format, version, config, state_dict, optimizer, epoch, metrics,
extra}`` holding only plain Python values and tensors, so it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_fanet.io.atomic import atomic_write
from napari_fanet.models.registry import ModelConfig, model_from_config

CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("format", "config", "state_dict")


def _package_version() -> str:
    from napari_fanet import __version__

    return __version__


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int | None = None,
    metrics: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (built by the registry) and its training state to ``path`` atomically.

    The file is written to a temporary name in the same folder and renamed over ``path``, so an
    interrupted save never leaves a truncated checkpoint behind.

    Parameters
    ----------
    path : str or PathLike
        Destination file (conventionally ``*.pt``).
    model : torch.nn.Module
        A model with a ``config`` attribute (from :func:`build_model`).
    optimizer : torch.optim.Optimizer, optional
        Saved so training can resume.
    epoch : int, optional
        Epoch or step count reached.
    metrics : dict, optional
        Scalar metrics to keep with the weights.
    extra : dict, optional
        Any other plain-Python information (training command, seed...).

    Returns
    -------
    pathlib.Path
        The written path.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise ValueError(
            "model has no ModelConfig in model.config; build it with build_model() or "
            f"model_from_config() (got config={config!r})"
        )
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": _package_version(),
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": epoch,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "extra": extra or {},
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint dict (``weights_only=True``) without building the model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        # torch's own text can run to a page of advice for its developers: keep its first sentence
        first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:160]
        raise ValueError(
            f"{path} is not a readable napari-fanet checkpoint: expected a .pt file written by "
            f"napari-fanet train (save_checkpoint), got one torch.load refuses "
            f"({type(exc).__name__}: {first})"
        ) from exc
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"{path} is not a napari-fanet checkpoint: expected a dict with keys "
            f"{list(REQUIRED_KEYS)}, found {found}"
        )
    if isinstance(ckpt["format"], bool) or not isinstance(ckpt["format"], int):
        raise ValueError(
            f"{path} is not a napari-fanet checkpoint: expected an integer format, got "
            f"{ckpt['format']!r}"
        )
    if ckpt["format"] > CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} uses checkpoint format {ckpt['format']}, newer than this napari-fanet "
            f"supports ({CHECKPOINT_FORMAT}); upgrade napari-fanet"
        )
    try:
        ModelConfig.from_dict(ckpt["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{path}: expected a model config of ModelConfig fields, got a malformed one "
            f"({exc}); the checkpoint cannot be used"
        ) from exc
    return ckpt


def copy_with_extra(
    source: str | os.PathLike, target: str | os.PathLike, updates: dict[str, Any]
) -> Path:
    """Write checkpoint ``source`` to ``target`` atomically, ``updates`` merged into its extra.

    Everything else (weights, config, optimizer state, metrics) is kept as it is; ``target``
    may be ``source``.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`read_checkpoint`.
    """
    ckpt = read_checkpoint(source)
    ckpt["extra"] = {**(ckpt.get("extra") or {}), **updates}
    return atomic_write(target, lambda tmp: torch.save(ckpt, tmp))


def model_from_checkpoint_config(ckpt: dict, path: str | os.PathLike) -> nn.Module:
    """Build the (untrained) network a checkpoint's own ``config`` describes.

    Parameters
    ----------
    ckpt : dict
        A checkpoint from :func:`read_checkpoint`.
    path : str or PathLike
        Its file, named in messages.

    Raises
    ------
    ValueError
        The stored config is not a dict of :class:`ModelConfig` fields, or describes no network
        that can be built (unknown keys, missing fields, wrong types or values).
    """
    config = ckpt.get("config")
    try:
        return model_from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(
            f"{path}: expected a model config that builds a network, got a malformed one "
            f"({type(exc).__name__}: {exc}); the checkpoint cannot be used"
        ) from exc


def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model stored in ``path`` and load its weights.

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`save_checkpoint`.
    map_location : str or torch.device
        Where to load tensors (default CPU).

    Returns
    -------
    model : torch.nn.Module
        The rebuilt network (in eval mode), on ``map_location``.
    checkpoint : dict
        The whole checkpoint (config, optimizer state, epoch, metrics, extra).
    """
    ckpt = read_checkpoint(path, map_location=map_location)
    model = model_from_checkpoint_config(ckpt, path)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"weights in {path} do not match their own config: {exc}") from exc
    return model.to(map_location).eval(), ckpt
