"""The training loop: a generator of progress events, reproducible, resumable, DDP-aware.

``run_training`` yields plain dicts (``{"event": "step", "step": 10, "loss": 0.4, ...}``) that the
CLI prints as JSON lines and the napari widget plots. It writes ``log.jsonl``, ``last.pt`` and
``best.pt`` (atomically) into the output folder; ``resume=True`` continues from ``last.pt``. The
random state of step ``k`` is derived from ``(seed, rank, k)``, so a resumed run draws exactly
the batches an uninterrupted run would. Under ``torchrun`` (``WORLD_SIZE > 1``) the model is
wrapped in DistributedDataParallel (gloo on CPU, NCCL on CUDA); rank 0 validates and writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_fanet.engine.config import TrainConfig
from napari_fanet.engine.inference import WindowSettings, predict_volume, resolve_device
from napari_fanet.io.atomic import remove_stale_temporaries
from napari_fanet.models import (
    ModelConfig,
    build_model,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from napari_fanet.models.attention_growth import grow_attention, set_start_temperature
from napari_fanet.models.checkpoint import model_from_checkpoint_config
from napari_fanet.tasks import get_task, task_of_subject

log = logging.getLogger(__name__)


def _distributed() -> tuple[int, int]:
    """``(rank, world_size)``; initialises the process group under ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def _finish_distributed(world: int) -> None:
    """Wait for every rank, then tear the process group down (a live group aborts at exit)."""
    if world <= 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _any_rank_stops(flag: bool, world: int, device: torch.device) -> bool:
    if world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _build(config: TrainConfig) -> tuple[nn.Module, dict]:
    """The model to train (new, or the weights of ``init_checkpoint``) and inherited extras."""
    if config.init_checkpoint:
        model, ckpt = load_checkpoint(config.init_checkpoint)
        if config.attention_levels is not None or config.attention_kwargs:
            torch.manual_seed(config.seed)  # the new blocks' theta and phi
            model = grow_attention(model, config.attention_levels, config.attention_kwargs)
        for level, temperature in config.start_temperatures.items():
            set_start_temperature(model, int(level), temperature)
        return model.train(), dict(ckpt.get("extra", {}))
    torch.manual_seed(config.seed)
    overrides: dict[str, Any] = {"features": config.features}
    if config.attention_kwargs:
        overrides["attention_kwargs"] = dict(config.attention_kwargs)
    if config.attention_levels is not None:
        overrides["attention_levels"] = config.attention_levels
    return build_model(config.model, **overrides), {}


#: TrainConfig fields a resumed run may change without comment (it continues to more steps).
_RESUME_MAY_CHANGE = ("steps", "init_checkpoint")


@dataclass
class _Resumed:
    """What ``--resume`` continues: the checkpoint's own model, its extras and state."""

    path: Path
    ckpt: dict
    model: nn.Module
    extra: dict
    config: TrainConfig
    notes: list[str]

    def restore(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple[int, Any]:
        """Load the optimiser and scheduler state; return ``(step, best)``."""
        try:
            optimizer.load_state_dict(self.ckpt["optimizer"])
            scheduler.load_state_dict(self.ckpt["extra"]["scheduler"])
            return int(self.ckpt["epoch"]), self.ckpt["extra"].get("best")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{self.path}: cannot resume, expected the optimiser and scheduler state of a "
                f"training run, got an unusable one ({type(exc).__name__}: {exc})"
            ) from exc


def _resume(config: TrainConfig, last: Path) -> _Resumed:
    """Rebuild the model of ``last`` from its own config; note where the command line differs.

    The run continues the checkpoint's network whatever ``config.model`` and
    ``config.features`` say; every other setting that differs from the checkpoint's run is
    taken from the command line and reported.
    """
    ckpt = read_checkpoint(last)
    model = model_from_checkpoint_config(ckpt, last)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{last}: weights do not match their own config: {exc}") from exc
    stored = ModelConfig.from_dict(ckpt["config"])
    notes = []
    if not config.init_checkpoint and config.model != stored.name:
        notes.append(
            f"continuing the checkpoint's model {stored.name!r}, not --model {config.model!r}"
        )
    if tuple(config.features) != tuple(stored.features):
        notes.append(
            f"continuing the checkpoint's features {list(stored.features)}, not --features "
            f"{list(config.features)}"
        )
    extra = dict(ckpt.get("extra") or {})
    previous = extra.get("train_config")
    if isinstance(previous, dict):
        now = config.to_dict()
        for key in sorted(set(previous) & set(now)):
            if key in ("model", "features", *_RESUME_MAY_CHANGE) or previous[key] == now[key]:
                continue
            notes.append(f"{key} changes from {previous[key]!r} to {now[key]!r}")
    config = dataclasses.replace(config, model=stored.name, features=tuple(stored.features))
    return _Resumed(last, ckpt, model.train(), extra, config, notes)


def _milestones(config: TrainConfig) -> list[int]:
    return sorted({max(1, round(m * config.steps)) for m in config.milestones})


def _fingerprint(model: nn.Module) -> float:
    """A number that differs when any weight differs (to compare ranks)."""
    return float(
        sum((i + 1) * p.detach().double().sum() for i, p in enumerate(model.parameters()))
    )


class _JsonLog:
    def __init__(self, path: Path | None, rank: int) -> None:
        self.path, self.rank = path, rank

    def write(self, event: dict) -> dict:
        event = {**event, "rank": self.rank} if self.rank else event
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(event) + "\n")
        return event


def run_training(
    config: TrainConfig,
    train_subjects: Sequence[Any],
    val_subjects: Sequence[Any],
    out_dir: str | Path,
    *,
    resume: bool = False,
    should_stop: Callable[[], bool] | None = None,
    window: WindowSettings | None = None,
) -> Iterator[dict]:
    """Train, yielding events; see the module docstring.

    Parameters
    ----------
    config : TrainConfig
        The run's settings.
    train_subjects, val_subjects : sequence
        Loaded subjects (:class:`~napari_fanet.tasks.subjects.SegSubject` or
        :class:`~napari_fanet.tasks.subjects.QSMSubject`); ``val_subjects`` may be empty. The
        model's task prepares them (:meth:`~napari_fanet.tasks.Task.prepare_training`).
    out_dir : str or Path
        Folder for ``log.jsonl``, ``last.pt`` and ``best.pt`` (created if missing).
    resume : bool
        Continue from ``out_dir/last.pt``.
    should_stop : callable, optional
        Checked after every step; when true the run saves ``last.pt`` and ends with a
        ``"stopped"`` event.
    window : WindowSettings, optional
        Sliding-window settings for validation (default: the patch size, overlap 0.25).

    Yields
    ------
    dict
        ``start``, ``step``, ``validation``, ``checkpoint``, then ``done`` or ``stopped``.
    """
    if not train_subjects:
        raise ValueError("no training subjects: need at least one")
    rank, world = _distributed()
    device = resolve_device(config.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    out_dir = Path(out_dir)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    logger = _JsonLog(out_dir / "log.jsonl" if rank == 0 else None, rank)
    window = window or WindowSettings(roi_size=config.patch_size, overlap=0.25, device=str(device))

    if rank == 0:
        for stale in remove_stale_temporaries(out_dir, ("last.pt", "best.pt")):
            log.warning("removed %s, left by an interrupted checkpoint write", stale.name)
    resumed = _resume(config, out_dir / "last.pt") if resume else None
    if resumed is not None:
        model, extra, config = resumed.model, resumed.extra, resumed.config
        for note in resumed.notes:
            log.warning("--resume: %s", note)
    else:
        model, extra = _build(config)
        if extra.get("modality_dropout") and not config.modality_dropout:
            # A model trained for missing modalities stays so: its users may have FLAIR only.
            config = dataclasses.replace(config, modality_dropout=True)
            log.info("--init was trained with modality dropout: the fine-tune keeps it")
    task = get_task(model.config.task)
    data_task = task_of_subject(train_subjects[0])
    if task is not data_task:
        raise ValueError(
            f"model {model.config.name!r} is for {task.name} but the training data is "
            f"{data_task.name} data"
        )
    task.check_training_config(config)
    train_subjects, val_subjects = task.prepare_training(
        train_subjects, val_subjects, extra, config
    )
    extra["voxel_size"] = list(train_subjects[0].voxel_size)
    extra["train_config"] = config.to_dict()
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, _milestones(config), config.gamma)
    metric_name, higher_better = task.primary_metric
    step, best = 0, None
    if resumed is not None:
        step, best = resumed.restore(optimizer, scheduler)
    net: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def save(name: str, metrics: dict | None = None) -> dict:
        extra.update(scheduler=scheduler.state_dict(), best=best)
        path = save_checkpoint(
            out_dir / name, model, optimizer=optimizer, epoch=step, metrics=metrics, extra=extra
        )
        return logger.write(
            {"event": "checkpoint", "step": step, "kind": name[:-3], "path": str(path)}
        )

    def validate() -> Iterator[dict]:
        nonlocal best
        if rank != 0 or not val_subjects:
            return

        def infer(image: np.ndarray) -> torch.Tensor:
            return predict_volume(model, torch.from_numpy(image)[None], window)

        metrics = task.validate(val_subjects, infer, extra, config)
        model.to(device).train()
        yield logger.write({"event": "validation", "step": step, **metrics})
        value = metrics[metric_name]
        if best is None or (value > best if higher_better else value < best):
            best = value
            yield save("best.pt", metrics)

    yield logger.write(
        {
            "event": "start",
            "step": step,
            "steps": config.steps,
            "task": task.name,
            "world": world,
            "device": str(device),
            "model": model.config.name,
            "resumed": resume,
            **({"notes": resumed.notes} if resumed is not None and resumed.notes else {}),
        }
    )
    use_amp = config.amp and device.type == "cuda"
    started = time.perf_counter()
    model.train()
    while step < config.steps:
        rng = np.random.default_rng([config.seed, rank, step])
        batch = task.batch(train_subjects, rng, config, extra)
        batch = {k: v.to(device) for k, v in batch.items()}
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()
        with amp:
            loss = task.loss(net, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        yield logger.write(
            {
                "event": "step",
                "step": step,
                "steps": config.steps,
                "loss": loss.item(),
                "lr": optimizer.param_groups[0]["lr"],
                "elapsed_s": time.perf_counter() - started,
            }
        )
        stop = _any_rank_stops(bool(should_stop and should_stop()), world, device)
        if config.val_every and step % config.val_every == 0 and step < config.steps:
            yield from validate()
            if rank == 0 and not stop:  # a crash or a killed session loses at most val_every steps
                yield save("last.pt")
        if stop:
            if rank == 0:
                yield save("last.pt")
            yield logger.write({"event": "stopped", "step": step})
            _finish_distributed(world)
            return
    yield from validate()
    if rank == 0:
        yield save("last.pt")
    yield logger.write(
        {"event": "done", "step": step, "best": best, "weights_fingerprint": _fingerprint(model)}
    )
    _finish_distributed(world)
    if device.type == "cuda":
        torch.cuda.empty_cache()
