"""Models trained from the viewer: their model cards (data, steps, final losses, command, origin).

:func:`summarize_log` reads a run's ``log.jsonl`` (the trainer's events);
:func:`write_model_card` turns it, the run's ``export.json`` (which layers and annotation were
exported, see :mod:`~napari_fanet.engine.training_export`) and the training command into
``RUN/NAME.md`` beside the checkpoint ``RUN/NAME.pt``; :func:`publish_model` does both after a
run (:class:`~napari_fanet.engine.training_run.RunOutcome`) and adds the model to
:mod:`~napari_fanet.engine.model_catalog`. GUI-free.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from napari_fanet.engine import model_catalog
from napari_fanet.io.atomic import atomic_write

LOSS_WINDOW = 10  # steps averaged for the "final training loss"


def summarize_log(path: str | Path) -> dict:
    """Steps done, final training losses and validations of a run's ``log.jsonl``.

    Returns
    -------
    dict
        ``steps_done``, ``steps`` (planned), ``device``, ``model``, ``elapsed_s``,
        ``last_loss``, ``mean_loss`` (mean of the last ``loss_window`` steps, at most
        :data:`LOSS_WINDOW`),
        ``validations`` (list of dicts) and ``ending`` (``"done"``, ``"stopped"`` or None).
        Unreadable lines are skipped; a missing file gives zero steps.
    """
    out: dict = {"steps_done": 0, "steps": None, "device": None, "model": None, "elapsed_s": None}
    out.update(last_loss=None, mean_loss=None, loss_window=0, validations=[], ending=None)
    losses: list[float] = []
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = event.get("event") if isinstance(event, dict) else None
        if kind == "start":
            out.update(steps=event.get("steps"), device=event.get("device"))
            out["model"] = event.get("model")
        elif kind == "step":
            losses.append(float(event["loss"]))
            out.update(steps_done=event["step"], elapsed_s=event.get("elapsed_s"))
        elif kind == "validation":
            out["validations"].append({k: v for k, v in event.items() if k != "event"})
        elif kind in ("done", "stopped"):
            out["ending"] = kind
    if losses:
        window = losses[-LOSS_WINDOW:]
        out.update(last_loss=losses[-1], mean_loss=sum(window) / len(window))
        out["loss_window"] = len(window)
    return out


def _data_section(run_dir: Path) -> list[str]:
    path = run_dir / "export.json"
    if not path.is_file():
        return ["Training data: see the command below."]
    info = json.loads(path.read_text(encoding="utf-8"))
    layers = ", ".join(f"{role}: `{name}`" for role, name in info.get("layers", {}).items())
    lines = [f"One case exported from the napari viewer to `{info.get('data')}`.", "", layers]
    if "annotation_mode" in info:  # a segmentation case exported with its annotation
        lines += [
            "",
            f"Annotation mode: {info.get('annotation_mode')}; voxels trained on: "
            f"{info.get('lesion')} lesion, {info.get('background')} background; "
            f"{info.get('ignored')} unlabelled (ignored by the loss).",
        ]
    return lines


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def write_model_card(
    run_dir: str | Path,
    name: str,
    checkpoint: str | Path,
    *,
    command: Sequence[str],
    start_model: str,
    status: str,
) -> Path:
    """Write ``RUN/NAME.md`` describing a model trained in ``run_dir``; return its path.

    Parameters
    ----------
    run_dir : str or Path
        The run folder (``log.jsonl``, ``export.json``).
    name : str
        Model name (title of the card).
    checkpoint : str or Path
        The published checkpoint.
    command : sequence of str
        The training command.
    start_model : str
        What the run started from (a model name and path, or "new model").
    status : str
        How the run ended (``"done"`` or ``"stopped"``).
    """
    run_dir = Path(run_dir)
    log = summarize_log(run_dir / "log.jsonl")
    lines = [
        f"# Model card: `{name}`",
        "",
        f"Trained in napari-fanet's Train widget on {datetime.now():%Y-%m-%d %H:%M}, starting "
        f"from {start_model}. Checkpoint: `{Path(checkpoint).name}` (a copy of the run's "
        "`last.pt`).",
        "",
        "## Data",
        *_data_section(run_dir),
        "",
        "## Training",
        f"Run {status}: {log['steps_done']} of {log['steps']} steps on {log['device']} "
        f"(model `{log['model']}`)"
        + (f", {log['elapsed_s']:.0f} s of training." if log["elapsed_s"] is not None else "."),
        "",
        "```bash",
        shlex.join(str(c) for c in command),
        "```",
        "",
        "## Final losses",
        f"Training loss: {_fmt(log['last_loss'])} at the last step, {_fmt(log['mean_loss'])} "
        f"averaged over the last {log['loss_window']} steps.",
    ]
    if log["validations"]:
        keys = [k for k in log["validations"][0] if k not in ("step", "rank")]
        lines += [
            "",
            "| step | " + " | ".join(keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        lines += [
            f"| {v['step']} | " + " | ".join(_fmt(v.get(k)) for k in keys) + " |"
            for v in log["validations"]
        ]
    else:
        lines += ["", "No validation during this run."]
    lines += [
        "",
        "## Files",
        f"`{run_dir}`: `data/` (the exported layers and annotation), `log.jsonl` (events), "
        "`train-output.log` (the child's output), `last.pt` and `best.pt` (if validated).",
        "",
    ]
    text = "\n".join(lines)
    path = run_dir / f"{name}.md"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def default_model_name(base: str, run_dir: str | Path, *, fine_tuned: bool = True) -> str:
    """``BASE-finetuned-RUNFOLDER`` (``BASE-trained-...`` for a new model)."""
    return f"{base}-{'finetuned' if fine_tuned else 'trained'}-{Path(run_dir).name}"


def publish_model(
    outcome: Any,
    name: str,
    *,
    command: Sequence[str],
    start_model: str,
) -> model_catalog.ModelEntry:
    """Copy ``last.pt`` to ``RUN/NAME.pt``, write ``RUN/NAME.md`` and add it to the catalog.

    Call it from the GUI thread when widgets subscribe to the catalog. Raises ValueError for a
    failed run or a run without ``last.pt``.
    """
    if outcome.status not in ("done", "stopped") or outcome.checkpoint is None:
        raise ValueError(
            f"no model to publish: the run {outcome.status} without a checkpoint "
            f"({outcome.message})"
        )
    target = outcome.run_dir / f"{name}.pt"
    atomic_write(target, lambda tmp: shutil.copyfile(outcome.checkpoint, tmp), suffix=".pt")
    card = write_model_card(
        outcome.run_dir,
        name,
        target,
        command=list(command),
        start_model=start_model,
        status=outcome.status,
    )
    return model_catalog.add_model(target, name, card=card, trained=True)
