"""Give a trained FA-Net more folded-attention levels, or another energy scale, without retraining.

(:func:`drop_attention` does the opposite: a copy without some levels' blocks, to fine-tune.)

A trained network's weights carry over to a copy whose :class:`~.registry.ModelConfig` differs
only in ``attention_levels`` (more levels) and ``attention_kwargs`` (for example
``{"scale": "sqrt"}``). Each new :class:`~.folded_attention.FoldedAttention3d` block starts as
the identity: its value projection ``g`` is the identity ``1x1x1`` convolution and its gates
``beta`` are zero, so the block returns ``g(X) = X`` and the grown network computes what the
trained one did (up to the changed scale of the blocks that already existed, whose gates are
small). Fine-tuning then trains the new blocks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from napari_fanet.models.folded_attention import FoldedAttention3d
from napari_fanet.models.inspection import attention_blocks
from napari_fanet.models.registry import ModelConfig, model_from_config


def make_identity(block: FoldedAttention3d) -> None:
    """Set ``block`` to return its input: ``g`` the identity, every gate ``beta`` zero."""
    with torch.no_grad():
        weight = block.g.weight  # (C, C, 1, 1, 1)
        weight.zero_()
        weight[:, :, 0, 0, 0] = torch.eye(weight.shape[0], dtype=weight.dtype)
        block.g.bias.zero_()
        block.beta.zero_()


def folded_attention_config(model: nn.Module, doing: str) -> ModelConfig:
    """``model``'s config, or a ``ValueError`` saying ``doing`` needs folded attention."""
    config: ModelConfig | None = getattr(model, "config", None)
    if config is None or config.attention != "fa":
        found = "no config" if config is None else f"attention={config.attention!r}"
        raise ValueError(f"{doing} needs a network with folded attention (fanet-*), got {found}")
    return config


def grow_attention(
    model: nn.Module,
    attention_levels: Sequence[int] | None = None,
    attention_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """A copy of a trained FA-Net with more attention levels and/or other attention options.

    Parameters
    ----------
    model : torch.nn.Module
        A network built by :func:`~.registry.model_from_config` with folded attention
        (``model.config.attention == "fa"``).
    attention_levels : sequence of int, optional
        The new levels; they must include every level ``model`` already has (weights are never
        dropped). None keeps the model's levels.
    attention_kwargs : mapping, optional
        Options merged into the model's own ``attention_kwargs`` for every block (for example
        ``{"scale": "sqrt"}``). None changes nothing.

    Returns
    -------
    torch.nn.Module
        The grown network, in training mode, with ``model``'s weights and identity-initialised
        new blocks; its ``config`` records the new levels and options.

    Raises
    ------
    ValueError
        ``model`` has no folded attention, or ``attention_levels`` drops one of its levels.
    """
    config = folded_attention_config(model, "growing attention")
    levels = tuple(config.attention_levels if attention_levels is None else attention_levels)
    dropped = sorted(set(config.attention_levels) - set(levels))
    if dropped:
        raise ValueError(
            f"attention levels {list(levels)} drop the trained block(s) at level(s) {dropped} "
            f"(the model has {list(config.attention_levels)}); keep them"
        )
    kwargs = {**config.attention_kwargs, **dict(attention_kwargs or {})}
    grown = model_from_config(
        dataclasses.replace(config, attention_levels=levels, attention_kwargs=kwargs)
    )
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"cannot grow the network: weights with no place in it: {unexpected}")
    new_levels = [level for level in levels if level not in config.attention_levels]
    fresh = []
    for level in new_levels:
        if str(level) in grown.level_attention:
            make_identity(grown.level_attention[str(level)])
            fresh.append(f"level_attention.{level}.")
        else:  # the bottleneck
            make_identity(grown.attention)
            fresh.append("attention.")
    untouched = [key for key in missing if not any(key.startswith(p) for p in fresh)]
    if untouched:  # e.g. a learned temperature newly switched on: it starts at its default
        grown_state = grown.state_dict()
        if any(not key.endswith("log_temperature") for key in untouched):
            raise ValueError(f"cannot grow the network: no trained weights for {untouched}")
        for key in untouched:
            grown_state[key].zero_()
    return grown.train()


def drop_attention(model: nn.Module, levels: Sequence[int]) -> nn.Module:
    """A copy of a trained FA-Net without the folded-attention blocks at ``levels``.

    Every other weight carries over; the dropped levels' features pass through unchanged
    (their blocks, including the value projection ``g``, are gone), so the copy computes
    something else until it is fine-tuned.

    Parameters
    ----------
    model : torch.nn.Module
        A network built by :func:`~.registry.model_from_config` with folded attention.
    levels : sequence of int
        Levels of ``model``'s blocks to drop; at least one block must remain.

    Returns
    -------
    torch.nn.Module
        The copy, in training mode; its ``config`` records the remaining levels.

    Raises
    ------
    ValueError
        ``model`` has no folded attention, a level has no block, or no block would remain.
    """
    config = folded_attention_config(model, "dropping attention")
    have = tuple(config.attention_levels)
    absent = sorted(set(levels) - set(have))
    if absent:
        raise ValueError(
            f"cannot drop attention at level(s) {absent}: expected levels of the model's "
            f"blocks {list(have)}"
        )
    keep = tuple(level for level in have if level not in set(levels))
    if not keep:
        raise ValueError(
            f"dropping {sorted(set(levels))} would leave no attention block (the model has "
            f"{list(have)}); use the backbone (unet-*) instead"
        )
    smaller = model_from_config(dataclasses.replace(config, attention_levels=keep))
    names = {lv: name for lv, name in attention_blocks(model).items() if lv in set(levels)}
    state = {
        key: value
        for key, value in model.state_dict().items()
        if not any(key.startswith(f"{name}.") for name in names.values())
    }
    smaller.load_state_dict(state, strict=True)  # every remaining weight has its place
    return smaller.train()


def set_start_temperature(model: nn.Module, level: int, temperature: float) -> None:
    """Start the learned temperature of ``model``'s block at ``level`` at ``temperature``.

    Every axis of that block gets ``temperature``, so its energies become ``temperature`` times
    softer (with cosine energies, ``10 x cosine / temperature``).

    Raises
    ------
    ValueError
        ``temperature`` is not a positive finite number, or the level has no block with a
        learned temperature.
    """
    if not (isinstance(temperature, int | float) and 0 < temperature < math.inf):
        raise ValueError(f"a start temperature must be a positive number, got {temperature!r}")
    blocks = {lv: model.get_submodule(name) for lv, name in attention_blocks(model).items()}
    block = blocks.get(level)
    if block is None or not block.learn_temperature:
        has = [lv for lv, b in blocks.items() if b.learn_temperature]
        raise ValueError(
            f"start temperature for level {level}: expected a level whose folded attention "
            f"learns a temperature (--attention-scale cosine), got none there (levels with "
            f"one: {has})"
        )
    with torch.no_grad():
        block.log_temperature.fill_(math.log(temperature))
