"""``napari-fanet evaluate --task ms --data DIR``: segmentation models on real labelled scans.

Scores every model per subject and input mode against the reference lesion masks, beside the
FLAIR-threshold baseline tuned leave-one-out (:mod:`napari_fanet.evaluation.real`), and
writes ``evaluation.md`` and ``evaluation.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_fanet.cli.base import CommandError, UsageError, load_models


def seg_models(name: str, cases: list[str]) -> list:
    """``name`` as :class:`SegModel` s: shipped or checkpoint, or a leave-one-out pattern."""
    from napari_fanet.evaluation import real as rev

    if rev.SUBJECT_FIELD not in name:
        return [
            rev.SegModel(stem, m, c)
            for stem, (m, c) in load_models([name], "segmentation").items()
        ]
    display = Path(name).parent.name.replace(rev.SUBJECT_FIELD, "held-out") + " (LOO)"

    def loader(path: str) -> tuple:
        return next(iter(load_models([path], "segmentation").values()))

    try:
        return [rev.LeaveOneOutModels(display, name, cases, loader)]
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from exc


def run_real(args: argparse.Namespace) -> int:
    """Run ``napari-fanet evaluate --data DIR`` (MS only)."""
    from napari_fanet.engine.inference import WindowSettings
    from napari_fanet.evaluation import real as rev
    from napari_fanet.io.atomic import atomic_write
    from napari_fanet.tasks import SEGMENTATION, get_task
    from napari_fanet.tasks.lesion_mask import DEFAULT_THRESHOLD

    if get_task(args.task) is not SEGMENTATION:  # a segmentation-only evaluation
        raise UsageError(f"--data is for --task ms (real labelled MS scans), not {args.task}")
    try:
        cases = rev.load_real_cases(args.data)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    models = [m for name in args.models for m in seg_models(name, [c.name for c in cases])]
    settings = WindowSettings(roi_size=tuple(args.tile), overlap=args.overlap, device=args.device)
    rows = rev.evaluate_real(
        cases,
        models,
        list(args.modes),
        settings,
        prediction_options=args.prediction_options,
        progress=lambda m: print(m, file=sys.stderr),
    )
    title = (
        f"MS segmentation on {len(cases)} real subjects of {args.data} "
        f"({', '.join(c.name for c in cases)})"
    )
    report = rev.markdown_report(rows, title, mask_rule=args.prediction_options)
    print(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {
            "task": "ms",
            "data": str(args.data),
            "subjects": [c.name for c in cases],
            "modes": list(args.modes),
            "methods": [m.name for m in models] + [rev.BASELINE],
            "conventions": "Dice per subject; 26-connected lesions >= 3 voxels; standard LPPV; "
            "volume_error_ml = predicted - reference; baseline threshold tuned leave-one-out",
            "mask_rule": {"threshold": DEFAULT_THRESHOLD, **args.prediction_options},
            "per_subject": rows,
        }
        atomic_write(args.out / "evaluation.md", lambda p: p.write_text(report + "\n"))
        atomic_write(
            args.out / "evaluation.json", lambda p: p.write_text(json.dumps(payload, indent=1))
        )
    return 0
