"""Command line interface: ``napari-fanet <command> ...`` (or ``python -m napari_fanet``).

Commands are registered in :data:`COMMANDS` with :func:`register_command`; each one supplies a
function that adds its arguments to an ``argparse`` sub-parser and a function that runs it and
returns an exit status. Heavy modules (torch, the simulator) are imported inside the run
functions, so ``napari-fanet --help`` stays fast.

Exit status: 0 on success, 2 for usage errors (argparse, or :class:`UsageError`), 1 for runtime
errors (:class:`CommandError`; expected failures print one line on stderr, no traceback), 130
when interrupted with Ctrl-C.

Adding a command::

    def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", type=Path, required=True, help="...")

    def _run_train(args: argparse.Namespace) -> int:
        from .engine import train  # lazy
        ...
        return 0

    register_command(Command("train", "train a model", _add_train_arguments, _run_train))
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("napari_fanet")

PROG = "napari-fanet"


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


def learning_rate(text: str) -> float:
    """Parse a learning rate in ``(0, 1]`` (argparse ``type``)."""
    return _in_range(text, float, 0.0, 1.0, open_low=True, open_high=False)


def tile_size(text: str) -> int:
    """Parse a tile or patch edge in voxels, within :data:`TILE_RANGE` (argparse ``type``)."""
    return _in_range(text, int, *TILE_RANGE, open_low=False, open_high=False)


def voxel_size_mm(text: str) -> float:
    """Parse a voxel size (mm) in :data:`~napari_fanet.io.VOXEL_SIZE_RANGE` (argparse type)."""
    from .io import VOXEL_SIZE_RANGE

    return _in_range(text, float, *VOXEL_SIZE_RANGE, open_low=False, open_high=False)


# -- simulate ----------------------------------------------------------------------------------


def load_models(names: Sequence[str], task: str) -> dict[str, tuple]:
    """``{file stem: (model, checkpoint)}`` of shipped names or checkpoint files of ``task``.

    ``task`` is ``"segmentation"`` or ``"qsm"``; a missing file or a model of another task is a
    :class:`CommandError` naming it.
    """
    from .engine.predict import load_model  # imports torch

    models = {}
    for name in names:
        try:
            model, ckpt = load_model(name)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if model.config.task != task:
            raise CommandError(f"{name} is a {model.config.task} model, not {task}")
        models[Path(name).stem] = (model, ckpt)
    return models


def _add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        required=True,
        choices=("qsm", "ms"),
        help="qsm: local field, susceptibility, magnitude, brain mask; "
        "ms: T1, T2, FLAIR, lesion/brain/white-matter masks",
    )
    parser.add_argument(
        "--subjects", type=positive_int, required=True, metavar="N", help="number of subjects"
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        required=True,
        metavar="S",
        help="seed of the first subject (subject i uses S + i). Convention: train 0, "
        "validation 10000, test 20000, sample data 90000",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--voxel-size",
        type=positive_float,
        nargs=3,
        default=(2.0, 2.0, 2.0),
        metavar=("X", "Y", "Z"),
        help="voxel size in mm, 0.25-10 (default: 2 2 2; anisotropic allowed, e.g. 1 1 3)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into DIR even if it is not empty (replaces dataset.json and sub-* folders)",
    )
    parser.add_argument(
        "--family",
        choices=("phantom", "randomised", "fullrange"),
        default="phantom",
        help="generator family: phantom (default); for --task ms, randomised "
        "(domain-randomised contrast, lesion load 0.1-80 mL, scanner artefacts; use "
        "--voxel-size 1 1 1); for --task qsm, fullrange (see napari-fanet train --help)",
    )
    parser.add_argument(
        "--no-noise", action="store_true", help="noise-free data (for tests and debugging)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _run_simulate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .simulation.dataset import iter_simulate_dataset

    try:
        events = iter_simulate_dataset(
            args.out,
            args.task,
            args.subjects,
            args.seed,
            voxel_size=tuple(args.voxel_size),
            overwrite=args.overwrite,
            noise=not args.no_noise,
            family=args.family,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:  # FileExistsError (non-empty DIR), permissions, ...
        raise CommandError(str(exc)) from exc
    with tqdm(
        total=args.subjects,
        desc=f"simulate {args.task}",
        unit="subject",
        file=sys.stderr,
        disable=args.no_progress,
    ) as bar:
        try:
            for _event in events:
                bar.update(1)
        except OSError as exc:
            raise CommandError(f"writing {args.out} failed: {exc}") from exc
    noun = "subject" if args.subjects == 1 else "subjects"
    print(f"wrote {args.subjects} {args.task} {noun} to {args.out}")
    return 0


register_command(
    Command(
        "simulate",
        "simulate a synthetic MS or QSM dataset (deterministic from a seed)",
        _add_simulate_arguments,
        _run_simulate,
        description=(
            "Simulate subjects from the shipped MNI152 2009 template and write them to DIR: "
            "dataset.json and one sub-NNNN folder per subject (NIfTI files and meta.json). "
            "The same seed gives the same data. See napari_fanet.simulation for the layout."
        ),
    )
)


# -- commands defined in their own modules ------------------------------------------------------


def _register_module_commands() -> None:
    """Register the commands of :mod:`cli_train` and :mod:`cli_predict` (imports are light)."""
    from . import cli_demo, cli_evaluate, cli_predict, cli_train

    for command in (
        cli_train.COMMAND,
        cli_predict.SEGMENT,
        cli_predict.QSM,
        cli_evaluate.COMMAND,
        cli_demo.COMMAND,
    ):
        if command.name not in COMMANDS:
            register_command(command)


# -- entry point -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per registered command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Folded Attention (FA-Net) for 3D MRI: MS lesion segmentation and QSM.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log messages (-vv: debug)"
    )
    _register_module_commands()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        child = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
        )
        command.add_arguments(child)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (it does not call ``sys.exit``).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 success, 1 runtime error, 2 usage error, 130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return COMMANDS[args.command].run(args)
    except CommandError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
