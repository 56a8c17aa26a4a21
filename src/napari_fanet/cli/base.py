"""What every command shares: the :class:`Command` record, the registry, errors, number parsers.

Only the standard library is imported here, so ``napari-fanet --help`` stays fast; each command
module imports its heavy modules (torch, the simulator) inside its run function.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("napari_fanet")

PROG = "napari-fanet"
#: ``--family`` choices of ``simulate`` and ``train``: every task's generator families, a copy of
#: ``simulation.dataset.FAMILIES`` (kept here so that ``--help`` imports no simulator; a test
#: keeps the two equal).
FAMILY_CHOICES = (
    "phantom",
    "randomised",
    "randomised-v2",
    "randomised-v4",
    "randomised-v5",
    "randomised-v6",
    "randomised-v7",
    "fullrange",
    "chain",
    "chain-vsharp",
)


class CommandError(Exception):
    """An expected failure of a command: its message is printed, the exit status is 1."""

    exit_code = 1


class UsageError(CommandError):
    """Invalid arguments detected after parsing: the exit status is 2."""

    exit_code = 2


@dataclass(frozen=True)
class Command:
    """A sub-command.

    Attributes
    ----------
    name : str
        Sub-command name (``napari-fanet NAME``).
    help : str
        One-line summary shown by ``napari-fanet --help``.
    add_arguments : callable
        ``add_arguments(parser)`` adds the command's arguments to its sub-parser.
    run : callable
        ``run(args) -> int`` runs the command and returns the exit status.
    description : str, optional
        Longer text for ``napari-fanet NAME --help`` (defaults to ``help``).
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


#: Registered sub-commands, in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {}


def register_command(command: Command) -> Command:
    """Add ``command`` to :data:`COMMANDS` (a name may be registered once)."""
    if command.name in COMMANDS:
        raise ValueError(f"command {command.name!r} is already registered")
    COMMANDS[command.name] = command
    return command


# -- argument types ----------------------------------------------------------------------------


def _parse_number(text: str, kind: type, minimum: float, inclusive: bool, what: str):
    """Parse ``text`` as ``kind`` and check it against ``minimum`` (argparse ``type`` helper)."""
    try:
        value = kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
    ok = value >= minimum if inclusive else value > minimum
    if not (ok and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    """Parse an integer >= 1 (argparse ``type``)."""
    return _parse_number(text, int, 1, True, "an integer >= 1")


def non_negative_int(text: str) -> int:
    """Parse an integer >= 0 (argparse ``type``)."""
    return _parse_number(text, int, 0, True, "an integer >= 0")


def non_negative_float(text: str) -> float:
    """Parse a finite number >= 0 (argparse ``type``)."""
    return _parse_number(text, float, 0.0, True, "a number >= 0")


def positive_float(text: str) -> float:
    """Parse a finite number > 0 (argparse ``type``)."""
    return _parse_number(text, float, 0.0, False, "a positive number")


#: Sliding-window tile sizes (voxels): below 16 the U-Net pads every tile to 16, above 512 one
#: tile alone needs tens of GiB.
TILE_RANGE = (16, 512)


def _in_range(
    text: str, kind: type, low: float, high: float, *, open_low: bool, open_high: bool
) -> int | float:
    """Parse ``text`` as a finite ``kind`` in the range ``low``..``high`` (argparse helper)."""
    noun = "an integer" if kind is int else "a number"
    what = f"{noun} {'>' if open_low else '>='} {low:g} and {'<' if open_high else '<='} {high:g}"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    if not (math.isfinite(value) and above and below):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def finite_float(text: str) -> float:
    """Parse any finite number (argparse ``type``; refuses ``nan`` and ``inf``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def probability(text: str) -> float:
    """Parse a number strictly between 0 and 1, such as a threshold (argparse ``type``)."""
    return _in_range(text, float, 0.0, 1.0, open_low=True, open_high=True)


def overlap_fraction(text: str) -> float:
    """Parse a tile overlap in ``[0, 1)`` (argparse ``type``)."""
    return _in_range(text, float, 0.0, 1.0, open_low=False, open_high=True)


def unit_interval(text: str) -> float:
    """Parse a fraction in ``[0, 1]``, such as a sampling probability (argparse ``type``)."""
    return _in_range(text, float, 0.0, 1.0, open_low=False, open_high=False)


def learning_rate(text: str) -> float:
    """Parse a learning rate in ``(0, 1]`` (argparse ``type``)."""
    return _in_range(text, float, 0.0, 1.0, open_low=True, open_high=False)


#: Window grids a segmentation may average (napari_fanet.engine.averaged_prediction's
#: MAX_WINDOW_SHIFTS; a test checks that they agree).
WINDOW_SHIFTS_RANGE = (1, 8)


def window_shifts(text: str) -> int:
    """Parse a number of window grids within :data:`WINDOW_SHIFTS_RANGE` (argparse ``type``)."""
    low, high = WINDOW_SHIFTS_RANGE
    return _in_range(text, int, low, high, open_low=False, open_high=False)


def tile_size(text: str) -> int:
    """Parse a tile or patch edge in voxels, within :data:`TILE_RANGE` (argparse ``type``)."""
    return _in_range(text, int, *TILE_RANGE, open_low=False, open_high=False)


def voxel_size_mm(text: str) -> float:
    """Parse a voxel size (mm) in :data:`~napari_fanet.io.nifti.VOXEL_SIZE_RANGE` (argparse)."""
    from napari_fanet.io.nifti import VOXEL_SIZE_RANGE

    return _in_range(text, float, *VOXEL_SIZE_RANGE, open_low=False, open_high=False)


def load_models(names: Sequence[str], task: str) -> dict[str, tuple]:
    """``{file stem: (model, checkpoint)}`` of shipped names or checkpoint files of ``task``.

    ``task`` is ``"segmentation"`` or ``"qsm"``; a missing file or a model of another task is a
    :class:`CommandError` naming it. Two names with the same file stem (``a/best.pt`` and
    ``b/best.pt``) are a :class:`UsageError`: their results would share one row.
    """
    stems: dict[str, str] = {}
    for name in names:
        if Path(name).stem in stems:
            raise UsageError(
                f"--models: {stems[Path(name).stem]} and {name} have the same name "
                f"{Path(name).stem!r}, so their results would share one row; give each "
                "checkpoint its own file name"
            )
        stems[Path(name).stem] = name
    from napari_fanet.engine.predict import load_model  # imports torch
    from napari_fanet.tasks import get_task

    wanted = get_task(task)
    models = {}
    for name in names:
        try:
            model, ckpt = load_model(name)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if not wanted.owns(model):
            raise CommandError(f"{name} is a {model.config.task} model, not {task}")
        models[Path(name).stem] = (model, ckpt)
    return models
