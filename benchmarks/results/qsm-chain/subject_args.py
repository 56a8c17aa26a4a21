"""``--snr`` and ``--seeds``, the arguments the exploratory QSM-chain scripts here share.

Each script names simulated validation subjects by seed and the first echo's SNR range; this
module adds both arguments and checks them, so every script refuses the same bad values with
the same usage errors.
"""

from __future__ import annotations

import argparse

from napari_fanet.simulation.gre_phase import GREParams


def add_subject_arguments(
    parser: argparse.ArgumentParser,
    *,
    snr_required: bool = False,
    seeds_required: bool = False,
    default_seeds: tuple[int, ...] = (10000, 10001),
) -> None:
    """Add ``--snr LO HI`` and ``--seeds S [S ...]`` to ``parser``."""
    parser.add_argument(
        "--snr", type=float, nargs=2, metavar=("LO", "HI"), default=None, required=snr_required,
        help="first-echo brain SNR range"
        + ("" if snr_required else " (default: the simulator's, 40-80)"),
    )  # fmt: skip
    parser.add_argument(
        "--seeds", type=int, nargs="+", required=seeds_required,
        default=None if seeds_required else list(default_seeds),
        help="simulated subjects' seeds (10000 and up: validation)",
    )  # fmt: skip


def subject_params(parser: argparse.ArgumentParser, args: argparse.Namespace) -> GREParams:
    """The simulator's settings for ``args.snr``, after a usage error for a bad ``--snr`` or
    ``--seeds``."""
    if args.snr is not None and not 0 < args.snr[0] <= args.snr[1]:
        parser.error(f"--snr: expected 0 < LO <= HI, got {args.snr}")
    if min(args.seeds) < 0:
        parser.error(f"--seeds: expected non-negative integers, got {args.seeds}")
    return GREParams() if args.snr is None else GREParams(snr=tuple(args.snr))
