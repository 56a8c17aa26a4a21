"""A uniform average of several checkpoints of one network (a "weight soup").

Runs that continue the same starting weights on different data or losses stay close enough in
weight space for their average to be a working network (Wortsman et al., "Model soups", ICML
2022). The average keeps what the runs share and evens out what each learned by chance, at no
cost at inference. The networks here use GroupNorm, so no batch statistics need recomputing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from napari_fanet.models.checkpoint import load_checkpoint

#: ``extra`` entries that describe a training run's state, which an average is not.
TRAINING_STATE_KEYS = ("scheduler", "best", "train_config", "averaged_from")


_MISSING = object()


def _same_value(values: list) -> bool:
    first = values[0]
    return all(type(v) is type(first) and v == first for v in values[1:])


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> tuple[nn.Module, dict]:
    """The network whose floating-point weights are the mean of those of ``paths``.

    Parameters
    ----------
    paths : sequence of str or PathLike
        Two or more checkpoint files (:func:`~.checkpoint.save_checkpoint`) of the same model
        config, for example runs that continued one starting point.

    Returns
    -------
    model : torch.nn.Module
        The network of the first file's config, holding the averaged weights (eval mode, CPU).
        Integer buffers, if any, are the first file's.
    extra : dict
        What to store with it: the files' common ``extra`` entries (voxel size, modality
        dropout, QSM input scales...) without training state (:data:`TRAINING_STATE_KEYS`),
        and ``averaged_from``, one record per file (its path as given, step, ``train_config``).

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        Fewer than two files, an unreadable file, files of different model configs, or files
        whose ``extra`` entries other than training state differ (for example networks
        trained at different voxel sizes or input scales).
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    loaded = [load_checkpoint(p) for p in paths]
    first_model, first = loaded[0]
    for path, (_, ckpt) in zip(paths[1:], loaded[1:], strict=True):
        if ckpt["config"] != first["config"]:
            raise ValueError(
                f"{path}: expected the model config of {paths[0]} ({first['config']}), got "
                f"{ckpt['config']}; only checkpoints of one network can be averaged"
            )
    states = [model.state_dict() for model, _ in loaded]
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            stacked = torch.stack([s[key].to(torch.float64) for s in states])
            averaged[key] = stacked.mean(0).to(value.dtype)
        else:
            averaged[key] = value
    first_model.load_state_dict(averaged)
    extras = [dict(ckpt.get("extra") or {}) for _, ckpt in loaded]
    keys = set().union(*(set(e) for e in extras)) - set(TRAINING_STATE_KEYS)
    for key in sorted(keys):
        values = [e.get(key, _MISSING) for e in extras]
        if not _same_value(values):
            found = ", ".join(
                f"{p.name}: {'(none)' if v is _MISSING else repr(v)}"
                for p, v in zip(paths, values, strict=True)
            )
            raise ValueError(
                f"expected the same extra[{key!r}] in every checkpoint (it describes the "
                f"network's inputs, so networks that differ in it cannot be averaged), got {found}"
            )
    extra = {k: extras[0][k] for k in sorted(keys)}
    extra["averaged_from"] = [
        {"file": str(p), "step": ckpt.get("epoch"), "train_config": e.get("train_config")}
        for p, (_, ckpt), e in zip(paths, loaded, extras, strict=True)
    ]
    return first_model.eval(), extra
