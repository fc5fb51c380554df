"""The `calibrate` subcommand's arguments; the work is in the package's modules."""

from __future__ import annotations

import argparse
from typing import Any


def add_command(commands: Any) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="write rules that meet a quality target at the lowest cost, from labels"
    )
    calibrate.set_defaults(run=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    raise NotImplementedError("issue 16: calibrate")
