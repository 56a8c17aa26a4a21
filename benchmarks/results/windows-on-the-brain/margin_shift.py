"""``napari-fanet evaluate`` with another zero margin around the brain box: the windows move.

``segment`` predicts on the brain's bounding box padded by ``BRAIN_BOX_MARGIN`` (4) zero voxels;
a margin of 12 moves every window 8 voxels relative to the brain (a quarter of a window step)
and changes nothing else. Comparing the leave-one-out rows at margins 4 and 12 measures how
much a result still depends on where the windows fall, with one grid or with two::

    PYTHONPATH=src python benchmarks/results/windows-on-the-brain/margin_shift.py 12 \\
        evaluate --task ms --data ../shared/data/open-ms-lesjak2017 \\
        --models 'runs/ms-loo18/fanet-seg-without-{subject}.pt' \\
        --modes flair t1-flair t1-t2-flair --device cpu --match-roughness \\
        --window-shifts 2 --out runs/eval-ms-loo18-margin12-shift2
"""

from __future__ import annotations

import sys
from functools import partial
from unittest import mock

from napari_fanet.cli import main as cli_main
from napari_fanet.engine import averaged_prediction, predict


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit() or argv[1] != "evaluate":
        sys.exit(
            "usage: margin_shift.py MARGIN evaluate ARGS... (MARGIN: zero voxels around the "
            f"brain box, a whole number; got {argv[:2]})"
        )
    margin = int(argv[0])
    crop = partial(averaged_prediction.crop_to_brain, margin=margin)
    uncrop = partial(averaged_prediction.without_margin, margin=margin)
    with (
        mock.patch.object(predict, "crop_to_brain", crop),
        mock.patch.object(predict, "without_margin", uncrop),
    ):
        return cli_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
