"""`tier-router labels`: judged samples and feedback, exported as labels (JSONL)."""

from __future__ import annotations

import argparse
from typing import Any


def add_command(commands: Any) -> None:
    labels = commands.add_parser("labels", help="export judged samples and feedback as labels (JSONL)")
    labels.set_defaults(run=run_labels)


def run_labels(args: argparse.Namespace) -> int:
    raise NotImplementedError("issue 16: labels export")
