"""``napari-fanet demo``: both tasks on the sample cases, every model beside the baselines.

:func:`run_demo` segments MS lesions in ``ms/sub-0000`` and reconstructs susceptibility from
``qsm/sub-0000`` of the sample data (the copy in the wheel or the repository's ``sample_data/``,
found by :mod:`napari_fanet.evaluation.sample_files`; without it the same cases are simulated
again, seed 90000, bit-identical) with every shipped model of each task, or the checkpoints given,
and with the classical baselines of ``shared/EVALUATION.md`` (FLAIR threshold; TKD and CFL2) at the
parameters in ``sample_data/baselines.json``, which were tuned on validation subjects, never on the
sample cases. It writes NIfTI maps with the source images' affines, ``metrics.md``,
``metrics.json`` and ``figures/{ms,qsm}.png``. Everything is computed before the first file is
written, and each file is written atomically. GUI-free: matplotlib is imported (Agg canvas, no
pyplot) only when the figures are drawn.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_fanet.evaluation.demo_figures import figure_ms, figure_qsm
from napari_fanet.evaluation.demo_results import DemoModel, DemoResult, TaskResult
from napari_fanet.evaluation.sample_files import SAMPLE_SEED, SUBJECT, simulate_sample_data
from napari_fanet.evaluation.sample_files import (
    shipped_sample_data as repository_sample_data,  # its old name
)
from napari_fanet.evaluation.scoring import Method, MethodResult, run_and_score
from napari_fanet.io.atomic import atomic_write
from napari_fanet.io.b0_direction import array_to_world_direction, world_to_array_direction
from napari_fanet.io.nifti import Volume, check_same_grid, load_volume, save_volume
from napari_fanet.tasks.lesion_mask import DEFAULT_RULE

logger = logging.getLogger(__name__)
Log = Callable[[str], None]

#: How the demo's segmentations become masks: ``segment``'s default rule.
SEG_MASK_RULE = DEFAULT_RULE
#: Copy of the tuned values in ``sample_data/baselines.json``, used only where that file is
#: missing (an installed package without the repository); a test keeps the two equal.
BUILTIN_PARAMETERS = {"flair_threshold_z": 3.25, "tkd_threshold": 0.225, "cfl2_lambda": 0.00562}
#: Table columns: (metrics key, header, format).
MS_COLUMNS = tuple(
    zip(
        ("dice", "ltpr", "lppv", "lf1", "n_pred", "seconds"),
        ("Dice", "LTPR", "LPPV", "L-F1", "lesions", "time (s)"),
        ("{:.3f}",) * 4 + ("{:d}", "{:.1f}"),
        strict=True,
    )
)
QSM_COLUMNS = tuple(
    zip(
        ("nrmse", "nrmse_demeaned", "hfen", "ssim", "xsim", "psnr", "seconds"),
        ("NRMSE %", "NRMSE demeaned %", "HFEN %", "SSIM", "XSIM", "PSNR dB", "time (s)"),
        ("{:.2f}",) * 3 + ("{:.3f}",) * 2 + ("{:.2f}", "{:.1f}"),
        strict=True,
    )
)
MS_CONVENTIONS = (
    "Dice = 2|P and G| / (|P| + |G|) over voxels (1.0 when both are empty). Lesions are "
    "26-connected components of >= 3 voxels (smaller ones are ignored by LTPR, LPPV and L-F1, "
    "not by Dice); a lesion is detected when it overlaps the other mask by >= 1 voxel. "
    "LTPR = detected GT lesions / GT lesions; LPPV = predicted lesions overlapping a GT lesion "
    "/ predicted lesions (the standard definition, not the paper-style one); L-F1 = harmonic "
    f"mean of LTPR and LPPV. Model masks: {SEG_MASK_RULE.describe()}. Time: inference only (model "
    "loading excluded); for the FLAIR threshold, WM mask + bias correction + threshold."
)
QSM_CONVENTIONS = (
    "All metrics inside the brain mask M, maps zeroed outside it. NRMSE = "
    "100 ||M(x - ref)|| / ||M ref||, not demeaned; 'demeaned' subtracts each map's mean "
    "inside M first (QSM challenge 2.0). HFEN: the same ratio after a Laplacian-of-Gaussian "
    "filter (sigma 1.5 voxels, 15x15x15 kernel). SSIM: 3D, Gaussian window sigma 1.5, inside "
    "M, L = range of ref in M, K = (0.01, 0.03). XSIM: the challenge's variant, L = 1 ppm, "
    "K = (0.01, 0.001). PSNR = 20 log10(R / RMSE), R = range of ref in M. Time: inference "
    "only (model loading excluded)."
)


# -- inputs ---------------------------------------------------------------------------------------


def load_parameters(baselines: Path) -> dict[str, dict]:
    """The tuned baseline parameters, each as ``{"value", "source"}`` (where it came from)."""
    if not baselines.is_file():
        src = f"built-in copy of sample_data/baselines.json ({baselines} not found)"
        return {k: {"value": v, "source": src} for k, v in BUILTIN_PARAMETERS.items()}
    try:
        b = json.loads(baselines.read_text())
        seeds = b["ms"]["validation_seeds"]
        ms = f"best mean Dice on validation seeds {min(seeds)}-{max(seeds)}"
        qsm = f"lowest NRMSE on validation seed {b['qsm']['validation_seed']}"
        values = {
            "flair_threshold_z": (b["ms"]["threshold"]["t1_wm"], "ms.threshold.t1_wm", ms),
            "tkd_threshold": (b["qsm"]["tuned"]["tkd"]["value"], "qsm.tuned.tkd", qsm),
            "cfl2_lambda": (b["qsm"]["tuned"]["cfl2"]["value"], "qsm.tuned.cfl2", qsm),
        }
        return {
            k: {"value": float(v), "source": f"{baselines} ({key}): {how}"}
            for k, (v, key, how) in values.items()
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{baselines}: expected the layout of sample_data/baselines.json, got a file "
            f"without {exc}"
        ) from exc


def resolve_models(names: Sequence[str] | None = None) -> list[DemoModel]:
    """Load every shipped model (default) or the given shipped names / checkpoint files."""
    from napari_fanet.engine.predict import load_model, shipped_weights
    from napari_fanet.tasks import TASKS

    shipped = shipped_weights()
    names = sorted(shipped) if names is None else list(dict.fromkeys(map(str, names)))
    models: list[DemoModel] = []
    for name in names:
        model, checkpoint = load_model(name)
        task = getattr(getattr(model, "config", None), "task", None)
        if task not in TASKS:
            raise ValueError(f"{name}: expected a segmentation or qsm model, got task {task!r}")
        key = name if name in shipped else re.sub(r"[^\w.-]+", "_", model.config.name)
        taken, n, base = {m.key for m in models}, 2, key
        while key in taken:
            key, n = f"{base}-{n}", n + 1
        source = str(shipped[name] if name in shipped else Path(name).resolve())
        models.append(DemoModel(key, source, name in shipped, model, checkpoint))
    return models


def prepare_output(out: Path) -> Path:
    """Create ``out`` and its subfolders, or raise saying why it cannot be used."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    try:
        for sub in ("ms", "qsm", "figures"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create output folder {out}: {exc.strerror or exc}") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {out} is not writable")
    return out


def _load(folder: Path, names: Sequence[str]) -> dict[str, Volume]:
    vols = {k: load_volume(folder / f"{k}.nii.gz", name=f"{folder.name}/{k}") for k in names}
    check_same_grid(vols)
    return vols


# -- the two tasks --------------------------------------------------------------------------------


def run_ms(folder: Path, models: list[DemoModel], z: float, settings, log: Log) -> TaskResult:
    """Segment the MS case with each model and the FLAIR threshold; metrics and maps.

    Every method runs through :func:`~napari_fanet.evaluation.scoring.run_and_score`, scored by
    the segmentation task's comparison (Dice, lesion metrics at >= 3 voxels, TP/FP/FN labels).
    """
    from napari_fanet.baselines.lesion_threshold import flair_threshold_segment, white_matter_mask
    from napari_fanet.engine.predict import segment
    from napari_fanet.tasks import SEGMENTATION

    v = _load(folder, ("t1", "t2", "flair", "brain_mask", "lesion_mask"))
    brain, gt = v["brain_mask"].data > 0.5, v["lesion_mask"].data > 0.5
    res = TaskResult([], v["flair"], images={"flair": v["flair"].data, "gt": gt, "brain": brain})

    def add(result: MethodResult, **extra: Any) -> np.ndarray:
        m, sec, label = result.metrics, result.seconds, result.method.title
        keep = {k: m[k] for k in ("dice", "ltpr", "lppv", "lf1", "n_pred", "n_gt")}
        res.rows.append({"method": result.name, "label": label, **keep, "seconds": sec, **extra})
        log(f"ms: {label}: Dice {m['dice']:.3f}, L-F1 {m['lf1']:.3f} ({sec:.1f} s)")
        res.panels[label] = result.comparison.maps["errors"]
        return res.panels[label]

    def network(m: DemoModel) -> Method:
        def run(case: dict[str, Volume]) -> Any:
            return segment(
                m.model,
                m.checkpoint,
                case["t1"],
                case["t2"],
                case["flair"],
                brain_mask=case["brain_mask"],
                threshold=SEG_MASK_RULE.threshold,
                seed_threshold=SEG_MASK_RULE.seed_threshold,
                min_lesion_mm3=SEG_MASK_RULE.min_volume_mm3,
                min_edge_distance_mm=SEG_MASK_RULE.min_edge_distance_mm,
                settings=settings,
            )

        return Method(m.key, run, m.label)

    by_key = {m.key: m for m in models}

    def segmenting(method: Method) -> None:
        log(f"ms: segmenting with {method.name} ...")

    def segmented(result: MethodResult) -> None:
        m, out = by_key[result.name], result.returned
        mask = result.outputs["mask"] > 0
        errors = add(result, checkpoint=m.source, device=out.report.device)
        res.volumes[f"{m.key}_lesion_probability"] = out.outputs["probability"]
        res.volumes[f"{m.key}_lesion_mask"] = mask.astype(np.uint8)
        res.volumes[f"{m.key}_error_labels"] = errors

    networks = [network(m) for m in models]
    run_and_score(SEGMENTATION, networks, v, gt, brain, before=segmenting, after=segmented)
    if not models:
        res.note = "no segmentation model available: only the FLAIR threshold baseline ran"
        log(f"ms: {res.note}")
    log("ms: FLAIR threshold baseline ...")
    vox = v["flair"].voxel_size

    def threshold(case: dict[str, Volume]) -> np.ndarray:
        wm = white_matter_mask(case["t1"].data, brain, voxel_size=vox)
        return flair_threshold_segment(case["flair"].data, brain, wm, z, voxel_size=vox)

    baseline = Method("flair-threshold", threshold, f"FLAIR threshold (z = {z:g})")
    (result,) = run_and_score(SEGMENTATION, [baseline], v, gt, brain)
    add(result)
    res.volumes["flair_threshold_mask"] = result.returned.astype(np.uint8)
    return res


def b0_directions(meta: dict, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit B0 direction in world axes (for the models) and in array axes (TKD, CFL2)."""
    world, array = meta.get("b0_dir_world"), meta.get("b0_dir")
    if world is None and array is None:
        raise ValueError("meta.json: expected 'b0_dir_world' or 'b0_dir' (the B0 direction)")
    if world is None:
        world = array_to_world_direction(array, affine)
    world = np.asarray(world, float) / np.linalg.norm(world)
    return world, world_to_array_direction(world, affine)


def run_qsm(folder: Path, models: list[DemoModel], params: dict, settings, log: Log) -> TaskResult:
    """Reconstruct the QSM case with each model, TKD and CFL2; metrics and maps.

    Every method runs through :func:`~napari_fanet.evaluation.scoring.run_and_score`, scored by
    the QSM task's comparison inside the brain mask.
    """
    from napari_fanet.baselines.dipole_inversion import cfl2, tkd
    from napari_fanet.engine.predict import reconstruct_qsm
    from napari_fanet.tasks import QSM

    v = _load(folder, ("local_field", "chi", "brain_mask"))
    b0_world, b0_array = b0_directions(
        json.loads((folder / "meta.json").read_text()), v["local_field"].affine
    )
    ref, mask = v["chi"].data, v["brain_mask"].data > 0.5
    images = {"chi": ref, "field": v["local_field"].data, "brain": mask}
    res = TaskResult([], v["local_field"], images=images)

    def add(result: MethodResult, **extra: Any) -> None:
        method, label, sec = result.name, result.method.title, result.seconds
        metrics = {k: float(x) for k, x in result.metrics.items()}
        res.rows.append({"method": method, "label": label, **metrics, "seconds": sec, **extra})
        log(f"qsm: {label}: NRMSE {metrics['nrmse']:.2f} % ({sec:.1f} s)")
        chi = result.outputs["chi"]
        res.volumes[f"{method}_chi"] = res.panels[label] = chi.astype(np.float32)

    def network(m: DemoModel) -> Method:
        def run(case: dict[str, Volume]) -> Any:
            return reconstruct_qsm(
                m.model,
                m.checkpoint,
                case["local_field"],
                case["brain_mask"],
                b0_dir=b0_world,
                settings=settings,
            )

        return Method(m.key, run, m.label)

    by_key = {m.key: m for m in models}

    def reconstructing(method: Method) -> None:
        log(f"qsm: reconstructing with {method.name} ...")

    def reconstructed(result: MethodResult) -> None:
        m = by_key[result.name]
        add(result, checkpoint=m.source, device=result.returned.report.device)
        res.volumes[f"{m.key}_abs_error"] = result.comparison.maps["absolute error"]

    networks = [network(m) for m in models]
    run_and_score(QSM, networks, v, ref, mask, before=reconstructing, after=reconstructed)
    if not models:
        res.note = "no QSM model available: only the TKD and CFL2 baselines ran"
        log(f"qsm: {res.note}")
    field_ppm, vox = v["local_field"].data, v["local_field"].voxel_size
    t, lam = params["tkd_threshold"]["value"], params["cfl2_lambda"]["value"]
    log("qsm: TKD and CFL2 baselines ...")
    baselines = [
        Method(
            "tkd",
            lambda _: tkd(field_ppm, vox, b0_array, threshold=t, mask=mask),
            f"TKD (threshold = {t:g})",
        ),
        Method(
            "cfl2",
            lambda _: cfl2(field_ppm, vox, b0_array, lam=lam, mask=mask),
            f"CFL2 (lambda = {lam:g})",
        ),
    ]
    run_and_score(QSM, baselines, v, ref, mask, after=add)
    return res


# -- tables ---------------------------------------------------------------------------------------


def markdown_table(rows: list[dict], columns: Sequence[tuple], note: str | None = None) -> str:
    """A markdown table, one row per method, ``columns`` as ``(key, header, format)``."""
    header = " | ".join(c[1] for c in columns)
    lines = [f"| method | {header} |", "|---" * (1 + len(columns)) + "|"]
    if note:
        lines.append(f"| *{note}* |" + " - |" * len(columns))
    for row in rows:
        cells = " | ".join(fmt.format(row[key]) for key, _, fmt in columns)
        lines.append(f"| {row['label']} | {cells} |")
    return "\n".join(lines)


def tables_text(summary: dict) -> str:
    """The MS and QSM tables of a ``metrics.json`` summary, in markdown."""
    ms, qsm = summary["ms"], summary["qsm"]
    return (
        f"MS lesion segmentation, {ms['case']} ({ms['n_gt_lesions']} GT lesions)\n\n"
        f"{markdown_table(ms['rows'], MS_COLUMNS, ms['note'])}\n\n"
        f"QSM reconstruction, {qsm['case']} (susceptibility in ppm)\n\n"
        f"{markdown_table(qsm['rows'], QSM_COLUMNS, qsm['note'])}"
    )


def render_markdown(summary: dict) -> str:
    """The text of ``metrics.md``: both tables with their conventions, parameters, timing."""
    env, w, ms, qsm = summary["environment"], summary["settings"], summary["ms"], summary["qsm"]
    params = "\n".join(
        f"- `{k}` = {p['value']:g}: {p['source']}" for k, p in summary["parameters"].items()
    )
    models = "\n".join(
        f"- `{m['method']}` ({m['task']}): {'shipped weights' if m['shipped'] else 'checkpoint'} "
        f"{m['checkpoint']}"
        for m in summary["models"]
    )
    return f"""# napari-fanet demo on the sample data

napari-fanet {summary["version"]}, device {env["device"]}, torch {env["torch"]} with
{env["threads"]} CPU threads, {env["platform"]}. Synthetic cases from the package's simulator
(seed {SAMPLE_SEED}, 2 mm), not patient data. One case per task: these numbers show what the
methods do; they are not a benchmark. Sample data: {summary["data"]}.

## MS lesion segmentation ({ms["case"]}, {ms["n_gt_lesions"]} GT lesions)

{markdown_table(ms["rows"], MS_COLUMNS, ms["note"])}

{MS_CONVENTIONS}

## QSM reconstruction ({qsm["case"]})

{markdown_table(qsm["rows"], QSM_COLUMNS, qsm["note"])}

{QSM_CONVENTIONS}

## Parameters

Classical baselines, tuned on validation subjects (never on the sample cases):

{params}

Models (lesion masks: {SEG_MASK_RULE.describe()}; sliding windows
{"x".join(map(str, w["tile"]))} voxels, overlap {w["overlap"]:g}, Gaussian blending):

{models or "- none"}

## Timing

Total {summary["seconds_total"]:.1f} s (loading, every method, metrics, NIfTI files and
figures); each method's own time is in the tables.
"""


# -- entry point ----------------------------------------------------------------------------------


def run_demo(
    out: str | os.PathLike = "fanet-demo",
    *,
    device: str = "auto",
    models: Sequence[str] | None = None,
    data: str | os.PathLike | None = None,
    tile: Sequence[int] = (64, 64, 64),
    overlap: float = 0.25,
    log: Log | None = None,
) -> DemoResult:
    """Run every model and baseline on the two sample cases and write the results to ``out``.

    Parameters
    ----------
    out : str or PathLike
        Output folder (created; files of an earlier run are replaced one by one, atomically).
    device : str
        ``"auto"``, ``"cuda"``, ``"mps"`` or ``"cpu"``, for the models.
    models : sequence of str, optional
        Shipped model names or checkpoint files (default: every shipped model); each runs on
        the task it was trained for. A task without a model runs its baselines only.
    data : str or PathLike, optional
        Folder with ``ms/sub-0000``, ``qsm/sub-0000`` and ``baselines.json`` (default: the
        shipped ``sample_data``, else the two cases are simulated again).
    tile, overlap : sequence of 3 int, float
        Sliding-window size in voxels and overlap fraction.
    log : callable, optional
        Receives progress lines (default: this module's logger, INFO level).

    Returns
    -------
    DemoResult
        The ``metrics.json`` content and the files written, in order.
    """
    import torch

    from napari_fanet import __version__
    from napari_fanet.engine.inference import WindowSettings, resolve_device
    from napari_fanet.tasks import QSM, SEGMENTATION, TASKS

    log = log or (lambda message: logger.info("%s", message))
    start = time.perf_counter()
    settings = WindowSettings(roi_size=tuple(tile), overlap=overlap, device=device)
    used_device = str(resolve_device(device))
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="fanet-demo-") as tmp:
        if data is None and (data := repository_sample_data()) is None:
            log(f"no sample_data/ folder: simulating the sample cases (seed {SAMPLE_SEED}) ...")
            data, source = simulate_sample_data(Path(tmp)), f"simulated again (seed {SAMPLE_SEED})"
        else:
            data, source = Path(data), str(data)
        for folder in (t.simulation_name for t in TASKS.values()):  # "ms", "qsm"
            if not (data / folder / SUBJECT).is_dir():
                raise FileNotFoundError(f"sample data {data}: no {folder}/{SUBJECT} folder")
        params = load_parameters(data / "baselines.json")
        loaded = resolve_models(models)
        log("models: " + (", ".join(f"{m.key} ({m.task})" for m in loaded) or "none"))
        prepare_output(out)  # after every cheap check, before the long part
        z = params["flair_threshold_z"]["value"]
        seg = [m for m in loaded if SEGMENTATION.owns(m.model)]
        ms = run_ms(data / "ms" / SUBJECT, seg, z, settings, log)
        rec = [m for m in loaded if QSM.owns(m.model)]
        qsm = run_qsm(data / "qsm" / SUBJECT, rec, params, settings, log)
    files = []
    for task, res in (("ms", ms), ("qsm", qsm)):
        for stem, array in res.volumes.items():
            dtype = np.float32 if array.dtype.kind == "f" else np.uint8
            path = out / task / f"{stem}.nii.gz"
            files.append(save_volume(path, array, res.reference, dtype=dtype))
    log(f"wrote {len(files)} NIfTI files; drawing figures ...")
    files.append(figure_ms(out / "figures" / "ms.png", ms))
    files.append(figure_qsm(out / "figures" / "qsm.png", qsm))
    paths = [out / "metrics.json", out / "metrics.md"]
    summary = {
        "version": __version__,
        "environment": {
            "device": used_device,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
        "data": source,
        "settings": {
            "tile": list(settings.roi_size),
            "overlap": settings.overlap,
            "sw_batch_size": settings.sw_batch_size,
            "seg_threshold": SEG_MASK_RULE.threshold,
            "seg_seed_threshold": SEG_MASK_RULE.seed_threshold,
            "seg_min_lesion_mm3": SEG_MASK_RULE.min_volume_mm3,
            "seg_min_edge_distance_mm": SEG_MASK_RULE.min_edge_distance_mm,
        },
        "parameters": params,
        "models": [
            {"method": m.key, "task": m.task, "checkpoint": m.source, "shipped": m.shipped}
            for m in loaded
        ],
        "ms": {
            "case": f"ms/{SUBJECT}",
            "n_gt_lesions": int(ms.rows[-1]["n_gt"]),
            "rows": ms.rows,
            "note": ms.note,
            "conventions": MS_CONVENTIONS,
        },
        "qsm": {
            "case": f"qsm/{SUBJECT}",
            "rows": qsm.rows,
            "note": qsm.note,
            "conventions": QSM_CONVENTIONS,
        },
        "files": [str(p.relative_to(out)) for p in files + paths],
        "seconds_total": time.perf_counter() - start,
    }
    summary = json.loads(json.dumps(summary, default=lambda x: x.item()))  # numpy scalars
    atomic_write(
        paths[0], lambda tmp: tmp.write_text(json.dumps(summary, indent=1) + "\n", "utf-8")
    )
    atomic_write(paths[1], lambda tmp: tmp.write_text(render_markdown(summary), "utf-8"))
    return DemoResult(summary, files + paths)
