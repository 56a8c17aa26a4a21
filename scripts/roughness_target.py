"""Record in a segmentation checkpoint the fine roughness of the real FLAIRs it trained on.

Usage: python scripts/roughness_target.py OUT.pt IN.pt FLAIR.nii.gz [FLAIR.nii.gz ...]

Each FLAIR (skull-stripped: its non-zero voxels are the brain) is put on the model's grid as
``segment`` puts it, its fine roughness measured
(:func:`napari_fanet.tasks.roughness.fine_roughness`), and the median written to ``OUT``'s
``extra["roughness_target"]``, with the FLAIRs' file names under
``extra["roughness_target_scans"]``; the weights and everything else are copied unchanged.
``segment --match-roughness`` then smooths a FLAIR rougher than that target until it is not.
Give the real FLAIRs the model trained on (a leave-one-out fold: the others, never the
held-out patient).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_fanet.engine.roughness_target import with_roughness_target


def main(argv: list[str]) -> int:
    """Write ``OUT`` with the FLAIRs' median roughness; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="checkpoint to write")
    parser.add_argument("source", type=Path, help="segmentation checkpoint to copy")
    parser.add_argument("flairs", type=Path, nargs="+", help="the real FLAIRs it trained on")
    args = parser.parse_args(argv)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    try:
        value = with_roughness_target(args.source, args.target, args.flairs)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    print(f"{args.target}: roughness target {value:.4f} (median of {len(args.flairs)} FLAIRs)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
