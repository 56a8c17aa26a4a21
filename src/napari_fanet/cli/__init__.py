"""Command line interface: ``napari-fanet <command> ...`` (or ``python -m napari_fanet``).

One module per command (``cli/simulate.py``, ``cli/train.py``, ``cli/predict.py`` for
``segment`` and ``qsm``, ``cli/evaluate.py``, ``cli/demo.py``); the shared :class:`Command`
record, the errors and the number parsers are in :mod:`napari_fanet.cli.base`. Commands are
registered in :data:`napari_fanet.cli.base.COMMANDS` with
:func:`~napari_fanet.cli.base.register_command`; each one supplies a function that adds its
arguments to an ``argparse`` sub-parser and a function that runs it and returns an exit status.
Heavy modules (torch, the simulator) are imported inside the run functions, so ``napari-fanet
--help`` stays fast.

Exit status: 0 on success, 2 for usage errors (argparse, or :class:`UsageError`), 1 for runtime
errors (:class:`CommandError`; expected failures print one line on stderr, no traceback), 130
when interrupted with Ctrl-C.

Adding a command::

    def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", type=Path, required=True, help="...")

    def _run_train(args: argparse.Namespace) -> int:
        from napari_fanet.engine import train  # lazy
        ...
        return 0

    register_command(Command("train", "train a model", _add_train_arguments, _run_train))
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from napari_fanet.cli import base, simulate
from napari_fanet.cli.base import PROG, CommandError, register_command

register_command(simulate.COMMAND)


# -- commands defined in their own modules ------------------------------------------------------


def _register_module_commands() -> None:
    """Register the commands of the ``cli.<command>`` modules (their imports are light)."""
    from napari_fanet.cli import demo, evaluate, predict, train

    for command in (train.COMMAND, predict.SEGMENT, predict.QSM, evaluate.COMMAND, demo.COMMAND):
        if command.name not in base.COMMANDS:
            register_command(command)


# -- entry point -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per registered command."""
    from napari_fanet import __version__

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
    for command in base.COMMANDS.values():
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
    from napari_fanet.engine.memory import retain_freed_memory  # light: no torch

    retain_freed_memory()  # this process ends with its command (engine/memory.py says why)
    try:
        return base.COMMANDS[args.command].run(args)
    except CommandError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
