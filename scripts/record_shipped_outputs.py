"""Record the reference outputs of shipped weights in ``tests/models/data/shipped_outputs.pt``.

For a fixed random input (seed 13, ``(1, in_channels, 56, 48, 64)``) this stores every 4th voxel
of the output, the bottleneck after attention and the output's sum, computed with the *literal*
folded-attention implementation in every FA block, so the test
``tests/models/test_folded_attention_fast.py::test_shipped_checkpoints_give_their_recorded_outputs``
checks the fast implementation against it. Run it after shipping new weights:

    PYTHONPATH=src python scripts/record_shipped_outputs.py fanet-seg unet-seg
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from napari_fanet.models import FoldedAttention3d, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "src" / "napari_fanet" / "weights"
RECORD = ROOT / "tests" / "models" / "data" / "shipped_outputs.pt"


def fixed_input(in_channels: int) -> torch.Tensor:
    """The test's input: ``(1, in_channels, 56, 48, 64)``, seed 13."""
    generator = torch.Generator().manual_seed(13)
    return torch.randn(1, in_channels, 56, 48, 64, generator=generator)


def record(name: str) -> dict[str, torch.Tensor]:
    """The reference entry of shipped model ``name`` (literal FA in every block)."""
    model, _ = load_checkpoint(WEIGHTS / f"{name}.pt")
    model.eval()
    for module in model.modules():
        if isinstance(module, FoldedAttention3d):
            module.implementation = "literal"
    x = fixed_input(model.in_channels)
    with torch.no_grad():
        out, bottleneck = model(x), model.bottleneck(x)
    return {
        "output": out[..., ::4, ::4, ::4].clone(),
        "bottleneck": bottleneck.clone(),
        "output_sum": out.double().sum(),
    }


def main(names: list[str]) -> int:
    """Update the entries of ``names``; the others stay as recorded."""
    if not names:
        print(__doc__, file=sys.stderr)
        return 2
    missing = [n for n in names if not (WEIGHTS / f"{n}.pt").is_file()]
    if missing:
        shipped = sorted(p.stem for p in WEIGHTS.glob("*.pt"))
        print(f"expected shipped model names {shipped}, got {missing}", file=sys.stderr)
        return 2
    recorded = torch.load(RECORD, weights_only=True)
    for name in names:
        recorded[name] = record(name)
        print(f"{name}: recorded (output sum {float(recorded[name]['output_sum']):.4f})")
    torch.save(recorded, RECORD)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
