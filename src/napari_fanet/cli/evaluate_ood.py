"""``napari-fanet evaluate --task qsm --suite ood``: the QSM out-of-distribution suite."""

from __future__ import annotations

import argparse
import json
import sys

from napari_fanet.cli.base import UsageError, load_models


def run_ood(args: argparse.Namespace) -> int:
    """Evaluate the models on every (or each chosen) family; print and save the tables."""
    from napari_fanet.engine.inference import WindowSettings
    from napari_fanet.evaluation.qsm_suite import (
        check_draws,
        run_family,
        suite_markdown,
        suite_names,
    )
    from napari_fanet.io.atomic import atomic_write
    from napari_fanet.tasks import QSM, get_task

    if get_task(args.task) is not QSM:  # a QSM-only suite
        raise UsageError(f"--suite ood is a QSM suite: use it with --task qsm, not {args.task}")
    names = args.families or suite_names()
    unknown = [n for n in names if n not in suite_names()]
    if unknown:
        known = ", ".join(suite_names())
        raise UsageError(f"--families: unknown {', '.join(unknown)}; expected some of {known}")
    try:  # before any model is loaded or subject simulated
        check_draws(args.n_test, args.n_val, args.seed_offset)
    except ValueError as exc:
        raise UsageError(f"--seed-offset/--n-test/--n-val: {exc}") from exc
    models = load_models(args.models, "qsm")
    settings = WindowSettings(roi_size=tuple(args.tile), overlap=args.overlap, device=args.device)
    results = []
    for name in names:
        print(
            f"family {name}: {args.n_test} test and {args.n_val} validation subjects",
            file=sys.stderr,
        )
        results.append(
            run_family(
                name,
                models,
                n_test=args.n_test,
                n_val=args.n_val,
                settings=settings,
                progress=lambda i, n: print(f"  subject {i}/{n}", file=sys.stderr),
                first_index=args.seed_offset,
            )
        )
    report = "## QSM out-of-distribution suite\n\n" + suite_markdown(results)
    print(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {
            "suite": "ood",
            "families": {
                r.family: {
                    "description": r.description,
                    "params": r.params,
                    "per_subject": r.rows,
                    "summary": r.summary(),
                    "vs_cfl2": {m: r.against(metric=m) for m in ("nrmse", "hfen")},
                }
                for r in results
            },
        }
        atomic_write(args.out / "ood.md", lambda p: p.write_text(report + "\n"))
        atomic_write(args.out / "ood.json", lambda p: p.write_text(json.dumps(payload, indent=1)))
    return 0
