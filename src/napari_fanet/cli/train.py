"""``napari-fanet train``: train or fine-tune a model (also the Train widget's child process).

With ``--events`` every training event is printed to stdout as one JSON line (the widget reads
them); otherwise a progress bar goes to stderr. SIGINT and SIGTERM stop the run after the current
step with a loadable ``last.pt``; the same command runs under ``torchrun``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from napari_fanet.cli.base import (
    FAMILY_CHOICES,
    Command,
    CommandError,
    UsageError,
    learning_rate,
    non_negative_float,
    non_negative_int,
    positive_int,
    tile_size,
    unit_interval,
    voxel_size_mm,
)

SEED_STRIDE = {"train": 0, "val": 10_000}
#: ``--attention-scale`` choices -> the FA blocks' options (cosine comes with its temperature).
ATTENTION_SCALES = {
    "none": {"scale": "none"},
    "sqrt": {"scale": "sqrt"},
    "cosine": {"scale": "cosine", "learn_temperature": True},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``napari-fanet train``."""
    data = parser.add_argument_group("data (a folder in the simulator's layout, or simulated)")
    data.add_argument("--data", type=Path, help="training subjects folder")
    data.add_argument("--val", type=Path, help="validation subjects folder (optional)")
    data.add_argument(
        "--simulate",
        type=positive_int,
        metavar="N",
        help="simulate N training subjects in memory instead of --data",
    )
    data.add_argument(
        "--family",
        choices=FAMILY_CHOICES,
        default="phantom",
        help="with --simulate: generator family. MS: randomised (domain-randomised contrast, "
        "lesion loads and scanner artefacts; use --voxel-size 1 1 1), randomised-v2, "
        "randomised-v4, randomised-v5, randomised-v6 or randomised-v7 (its generator versions "
        "2 and 4-7). "
        "QSM: fullrange "
        "(extra sources over the whole susceptibility range, B0 tilts up to 30 degrees) or chain "
        "(fullrange phantoms whose input is the phase chain's local field from simulated "
        "3-echo GRE phase: what qsm --phase gives the network, with its default background "
        "removal, LBV) or chain-vsharp (the same with V-SHARP)",
    )
    data.add_argument(
        "--simulate-val",
        type=non_negative_int,
        default=0,
        metavar="M",
        help="with --simulate: M validation subjects (seeds 10000+)",
    )
    data.add_argument(
        "--voxel-size",
        type=voxel_size_mm,
        nargs=3,
        default=(2.0, 2.0, 2.0),
        metavar=("X", "Y", "Z"),
        help="voxel size of simulated subjects in mm, 0.25-10 (default 2 2 2)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="fanet-seg", help="registry name (default fanet-seg)")
    model.add_argument(
        "--features",
        type=positive_int,
        nargs=5,
        default=(8, 16, 32, 64, 128),
        help="channels of the 5 levels (default 8 16 32 64 128)",
    )
    model.add_argument(
        "--attention-levels",
        type=int,
        nargs="+",
        metavar="L",
        help="U-Net levels that get the model's attention block, 0 (full resolution) to 4 "
        "(bottleneck, the default and the paper's place); e.g. 3 4 adds FA at 1/8 resolution",
    )
    model.add_argument(
        "--attention-scale",
        choices=tuple(ATTENTION_SCALES),
        help="energy scaling of folded attention: none (the paper's; softmax rows saturate "
        "to one-hot), sqrt (energies divided by the square root of the contracted size) or "
        "cosine (cosine similarities times 10, divided by a learned temperature per axis)",
    )
    model.add_argument(
        "--start-temperature",
        type=level_temperature,
        nargs="+",
        metavar="LEVEL=T",
        help="with --init and cosine energies: the learned temperature of the FA block at "
        "LEVEL (4 = bottleneck) starts at T instead of 1, which makes its rows T times softer "
        "(10 x cosine / T); e.g. 4=2 for a bottleneck whose 10 x cosine rows are one-hot",
    )
    model.add_argument(
        "--init",
        type=Path,
        metavar="CKPT",
        help="fine-tune from this checkpoint (its model replaces --model); with "
        "--attention-levels/--attention-scale its FA-Net first grows the new levels as "
        "identity blocks",
    )
    run = parser.add_argument_group("optimisation")
    run.add_argument("--steps", type=positive_int, default=1000, help="optimiser steps")
    run.add_argument("--batch-size", type=positive_int, default=2, help="patches per step")
    run.add_argument(
        "--patch-size",
        type=tile_size,
        nargs=3,
        default=(64, 64, 64),
        help="training patch size in voxels, 16-512 (default 64 64 64)",
    )
    run.add_argument(
        "--lr",
        type=learning_rate,
        default=1e-3,
        help="Adam learning rate in (0, 1] (default 1e-3)",
    )
    run.add_argument("--seed", type=non_negative_int, default=0, help="random seed")
    run.add_argument(
        "--val-every",
        type=non_negative_int,
        default=100,
        help="validate every N steps (0: only at the end)",
    )
    run.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    run.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    run.add_argument("--no-augment", action="store_true", help="no data augmentation")
    run.add_argument(
        "--modality-dropout",
        action="store_true",
        help="segmentation: train for missing modalities (each patch keeps FLAIR and a random "
        "subset of T1/T2, the others zeroed); the model then accepts FLAIR alone, T1 + FLAIR, "
        "T2 + FLAIR or all three",
    )
    run.add_argument(
        "--p-lesion",
        type=unit_interval,
        default=0.5,
        help="segmentation: fraction of training patches centred on a lesion voxel, 0-1 (the "
        "others are centred on a random brain voxel; default 0.5)",
    )
    run.add_argument(
        "--blob-weight",
        type=non_negative_float,
        default=0.0,
        help="segmentation: weight of a per-lesion soft-Dice term added to the loss, so that "
        "small lesions count as much as large ones and false positives enter every lesion's "
        "score (default 0: not used)",
    )
    run.add_argument(
        "--lesion-contrast",
        type=non_negative_float,
        nargs=2,
        metavar=("LO", "HI"),
        help="segmentation: augment the lesion contrast; half of the patches with lesions have "
        "each channel's lesions moved towards (factor < 1) or away from (> 1) the tissue around "
        "them by a factor drawn from LO-HI (for example 0.6 1.1; default: not used)",
    )
    run.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, required=True, help="run folder (log, checkpoints)")
    out.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    out.add_argument("--events", action="store_true", help="print events as JSON lines")


def _load_subjects(args: argparse.Namespace, task_name: str) -> tuple[list, list]:
    from napari_fanet.tasks import get_task

    task = get_task(task_name)
    if args.simulate:
        try:
            family = task.check_family(args.family)
        except ValueError as exc:
            raise UsageError(f"--family: {exc}") from exc
        vox = tuple(args.voxel_size)
        train = task.simulate_subjects(
            args.simulate, SEED_STRIDE["train"] + args.seed, vox, family=family
        )
        val = task.simulate_subjects(
            args.simulate_val, SEED_STRIDE["val"] + args.seed, vox, family=family
        )
        return train, val
    if args.data is None:
        raise UsageError("give --data DIR (a folder of subjects) or --simulate N")
    try:
        train = [task.load_subject(p) for p in task.list_subjects(args.data)]
        val = [task.load_subject(p) for p in task.list_subjects(args.val)] if args.val else []
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    return train, val


def level_temperature(text: str) -> tuple[int, float]:
    """``"LEVEL=T"`` -> ``(LEVEL, T)``: a U-Net level 0-4 and a positive temperature."""
    level, sep, value = text.partition("=")
    try:
        pair = (int(level), float(value))
    except ValueError:
        pair = None
    if not sep or pair is None or not 0 <= pair[0] <= 4 or not 0 < pair[1] < float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected LEVEL=T with LEVEL in 0..4 and T a positive number (e.g. 4=2), got {text!r}"
        )
    return pair


def _check_attention_options(args: argparse.Namespace) -> None:
    """``UsageError`` when the attention options cannot apply to the model.

    The options are ``--attention-levels``, ``--attention-scale`` and ``--start-temperature``.
    """
    from ..models.registry import MODEL_CONFIGS

    if args.start_temperature and not args.init:
        raise UsageError(
            "--start-temperature sets the temperature of a trained block: it needs --init CKPT"
        )
    if not (args.attention_levels or args.attention_scale or args.start_temperature):
        return
    if args.init:  # the checkpoint's model grows (models.attention_growth)
        from ..models import read_checkpoint

        try:
            config = read_checkpoint(args.init)["config"]
            attention = config.get("attention")
        except (OSError, ValueError, AttributeError) as exc:
            raise UsageError(f"--init: {exc}") from exc
        if attention != "fa":
            raise UsageError(
                "--attention-levels/--attention-scale/--start-temperature with --init need a "
                f"checkpoint with folded attention (fanet-*), got {args.init} "
                f"(attention={attention!r})"
            )
        _check_start_temperatures(args, config)
        return
    attention = MODEL_CONFIGS[args.model].attention if args.model in MODEL_CONFIGS else None
    if attention is None:
        raise UsageError(
            f"--attention-levels/--attention-scale need a model with attention, got "
            f"{args.model} (no attention block)"
        )
    if args.attention_scale and attention != "fa":
        raise UsageError(
            f"--attention-scale is for folded attention (fanet-*), got {args.model} ({attention})"
        )


def _check_start_temperatures(args: argparse.Namespace, config: dict) -> None:
    """``UsageError`` unless each ``--start-temperature`` level will learn a temperature."""
    if not args.start_temperature:
        return
    kwargs = {
        **config.get("attention_kwargs", {}),
        **ATTENTION_SCALES.get(args.attention_scale, {}),
    }
    levels = set(args.attention_levels or config.get("attention_levels") or (4,))
    if not kwargs.get("learn_temperature"):
        raise UsageError(
            f"--start-temperature: expected blocks that learn a temperature (add "
            f"--attention-scale cosine), got {args.init} with options {kwargs}"
        )
    missing = sorted({lv for lv, _ in args.start_temperature} - levels)
    if missing:
        raise UsageError(
            f"--start-temperature: expected levels with folded attention {sorted(levels)}, "
            f"got {missing}"
        )


def run(args: argparse.Namespace) -> int:
    """Run ``napari-fanet train``."""
    import torch

    from napari_fanet.engine.config import TrainConfig
    from napari_fanet.engine.train import run_training
    from napari_fanet.io.atomic import check_output_folder
    from napari_fanet.models import read_checkpoint
    from napari_fanet.tasks import get_task
    from napari_fanet.tasks.base import UnusableSetting

    if args.threads:
        torch.set_num_threads(args.threads)
    try:  # before loading any data: the run folder must take the log and checkpoints
        check_output_folder(args.out, ("log.jsonl", "last.pt", "best.pt"))
    except OSError as exc:
        raise CommandError(f"--out: {exc}") from exc
    if args.resume and not (args.out / "last.pt").is_file():
        raise UsageError(f"--resume: no {args.out / 'last.pt'} to resume from")
    _check_attention_options(args)
    try:
        config = TrainConfig(
            model=args.model,
            features=tuple(args.features),
            steps=args.steps,
            batch_size=args.batch_size,
            patch_size=tuple(args.patch_size),
            lr=args.lr,
            seed=args.seed,
            val_every=args.val_every,
            device=args.device,
            amp=not args.no_amp,
            augment=not args.no_augment,
            modality_dropout=args.modality_dropout,
            p_lesion=args.p_lesion,
            blob_weight=args.blob_weight,
            lesion_contrast=tuple(args.lesion_contrast) if args.lesion_contrast else None,
            init_checkpoint=str(args.init) if args.init else None,
            attention_levels=tuple(args.attention_levels) if args.attention_levels else None,
            attention_kwargs=ATTENTION_SCALES.get(args.attention_scale, {}),
            start_temperatures={str(lv): t for lv, t in args.start_temperature or ()},
        )
        source = args.out / "last.pt" if args.resume else args.init  # its model is trained
        task = read_checkpoint(source)["config"]["task"] if source else config.task
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from exc
    try:
        get_task(task).check_training_config(config)
    except UnusableSetting as exc:
        raise UsageError(f"--{exc.setting.replace('_', '-')}: {exc}") from exc
    train, val = _load_subjects(args, task)
    stop = {"requested": False}

    def request_stop(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("stopping after the current step (again to abort)", file=sys.stderr)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = None
    model_name = config.model  # --init trains the checkpoint's model: the start event names it
    try:
        events = run_training(
            config, train, val, args.out, resume=args.resume, should_stop=lambda: stop["requested"]
        )
        for event in events:
            if event["event"] == "start":
                model_name = event.get("model", model_name)
            if args.events:
                print(json.dumps(event), flush=True)
            elif event["event"] == "step" and event.get("rank", 0) == 0:
                if bar is None:
                    from tqdm import tqdm

                    bar = tqdm(
                        total=event["steps"],
                        initial=event["step"] - 1,
                        file=sys.stderr,
                        desc=f"train {model_name}",
                        unit="step",
                    )
                bar.update(1)
                bar.set_postfix(loss=f"{event['loss']:.4f}")
            elif event["event"] in ("validation", "done", "stopped") and not event.get("rank"):
                print(json.dumps(event), file=sys.stderr)
    except (ValueError, FloatingPointError, OSError) as exc:  # OSError: disk full, permissions
        raise CommandError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 0


COMMAND = Command(
    "train",
    "train or fine-tune a model on a folder of subjects (or simulated ones)",
    add_arguments,
    run,
    description=(
        "Train a registered model (or fine-tune a checkpoint with --init) with Adam and a "
        "multi-step schedule at 50/70/90%% of the steps. Writes OUT/log.jsonl, OUT/last.pt and "
        "OUT/best.pt atomically; Ctrl-C or SIGTERM stops after the current step with a "
        "loadable last.pt; --resume continues. Runs under torchrun for several GPUs."
    ),
)
