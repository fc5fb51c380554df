"""`tier-router quality`: the quality report (judged samples, feedback) from the state store."""

from __future__ import annotations

import argparse
from typing import Any


def add_command(commands: Any) -> None:
    quality = commands.add_parser("quality", help="answer quality per rule and tier (judged, feedback)")
    quality.set_defaults(run=run_quality)


def run_quality(args: argparse.Namespace) -> int:
    raise NotImplementedError("issue 16: the quality report")
