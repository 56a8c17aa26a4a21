"""Capture the folded-attention affinities of a whole network during a forward pass.

The attention inspector uses this: run the network once inside :func:`capture_affinities`, then
read the rank-one factors of any bottleneck element from the captured matrices without another
forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from napari_fanet.models.folded_attention import FoldedAttention3d, effective_matrices
from napari_fanet.models.folding import AXES
from napari_fanet.models.unet import DEPTH


@dataclass
class AffinityRecord:
    """The sub-affinities one :class:`FoldedAttention3d` computed in one forward pass.

    Attributes
    ----------
    affinities : dict
        ``{"D": (B, D, D), "H": (B, H, H), "W": (B, W, W), "C": (B, C, C)}`` softmax matrices.
    beta : torch.Tensor
        Shape ``(4,)``: the gates (D, H, W, C) at the time of the pass.
    variant : str
        ``"authors"`` or ``"pure"``.
    input_shape : tuple of int
        ``(B, C, D, H, W)`` of the block's input (the bottleneck grid).
    """

    affinities: dict[str, torch.Tensor]
    beta: torch.Tensor
    variant: str
    input_shape: tuple[int, ...]

    def effective(self) -> dict[str, torch.Tensor]:
        """``M_a = I + beta_a * A_a`` (authors variant) or ``A_a`` (pure variant)."""
        return effective_matrices(self.affinities, self.beta, self.variant)

    def factors(
        self, position: tuple[int, int, int, int], *, batch: int = 0, effective: bool = True
    ) -> dict[str, torch.Tensor]:
        """Rank-one factors of element ``(q, k, i, j)``: rows of shapes C, D, H and W."""
        _, c, d, h, w = self.input_shape
        sizes = {"C": c, "D": d, "H": h, "W": w}
        if len(position) != 4:
            raise ValueError(f"position must be (q, k, i, j), got {position!r}")
        for a, idx in zip(("C", "D", "H", "W"), position, strict=True):
            if not 0 <= idx < sizes[a]:
                raise ValueError(
                    f"position {position!r} is outside the bottleneck {self.input_shape}: "
                    f"axis {a} has size {sizes[a]}"
                )
        if not 0 <= batch < self.input_shape[0]:
            raise ValueError(f"batch {batch} is outside the batch of size {self.input_shape[0]}")
        mats = self.effective() if effective else self.affinities
        q, k, i, j = position
        return {
            "C": mats["C"][batch, q],
            "D": mats["D"][batch, k],
            "H": mats["H"][batch, i],
            "W": mats["W"][batch, j],
        }

    def spatial_map(
        self, position: tuple[int, int, int], *, batch: int = 0, effective: bool = True
    ) -> torch.Tensor:
        """Spatial attention ``m_D[k] x m_H[i] x m_W[j]`` of voxel ``(k, i, j)``: ``(D, H, W)``."""
        f = self.factors((0, *position), batch=batch, effective=effective)
        return torch.einsum("d,h,w->dhw", f["D"], f["H"], f["W"])


@dataclass
class AffinityCapture:
    """Records gathered by :func:`capture_affinities`, by module name."""

    records: dict[str, list[AffinityRecord]] = field(default_factory=dict)

    def last(self, name: str | None = None) -> AffinityRecord:
        """Most recent record of module ``name`` (default: the only FA module)."""
        if name is None:
            if len(self.records) != 1:
                raise ValueError(
                    f"model has {len(self.records)} FoldedAttention3d modules "
                    f"({sorted(self.records)}); name one"
                )
            name = next(iter(self.records))
        if name not in self.records:
            raise ValueError(f"no FoldedAttention3d named {name!r}; have {sorted(self.records)}")
        if not self.records[name]:
            raise ValueError(f"module {name!r} has not run a forward pass inside the capture")
        return self.records[name][-1]


def attention_blocks(model: nn.Module) -> dict[int, str]:
    """The :class:`FoldedAttention3d` blocks of ``model`` by U-Net level, as module names.

    Level ``l`` acts at ``1/2**l`` of the input resolution (``0`` finest, ``4`` the bottleneck):
    :class:`~.unet.UNet3d` keeps its bottleneck block in ``attention`` and the others in
    ``level_attention[str(l)]``. A network with one FA block elsewhere (not a U-Net) is taken to
    have it at the bottleneck, as the inspector always assumed; the grid check then tells.

    Returns
    -------
    dict
        ``{level: module name}`` sorted finest first (empty when there is no FA block).
    """
    names = [n for n, m in model.named_modules() if isinstance(m, FoldedAttention3d)]
    levels: dict[int, str] = {}
    for name in names:
        if name == "attention":
            levels[DEPTH] = name
        elif name.startswith("level_attention.") and name.count(".") == 1:
            levels[int(name.split(".")[1])] = name
    if not levels and len(names) == 1:
        levels[DEPTH] = names[0]
    return dict(sorted(levels.items()))


@contextmanager
def capture_affinities(model: nn.Module) -> Iterator[AffinityCapture]:
    """Record the affinities of every :class:`FoldedAttention3d` in ``model`` while active.

    Examples
    --------
    >>> with capture_affinities(net) as cap:  # doctest: +SKIP
    ...     net(volume)
    >>> cap.last().factors((0, 1, 2, 3))  # doctest: +SKIP
    """
    modules = {n: m for n, m in model.named_modules() if isinstance(m, FoldedAttention3d)}
    if not modules:
        raise ValueError(f"{type(model).__name__} contains no FoldedAttention3d module")
    raw: dict[str, list] = {n: [] for n in modules}
    previous = {n: m.captured for n, m in modules.items()}
    for n, m in modules.items():
        m.captured = raw[n]
    capture = AffinityCapture()
    try:
        yield capture
    finally:
        for n, m in modules.items():
            m.captured = previous[n]
            capture.records[n] = [
                AffinityRecord(
                    affinities={a: r[a] for a in AXES},
                    beta=r["beta"],
                    variant=r["variant"],
                    input_shape=r["input_shape"],
                )
                for r in raw[n]
            ]
