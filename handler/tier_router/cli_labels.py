"""`tier-router labels LOG... [--store URL] [--rules FILE] [--out FILE]`: judged samples and
feedback, exported as labels (JSONL) for `tier-router calibrate` (`quality.export`).

The labels go to `--out` (stdout without it); what was read, written and skipped goes to
stderr. Exit 0 once the labels are written (malformed log lines are counted, named and
skipped), 1 when a log, the store or the rules file cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import IO, Any


def add_command(commands: Any) -> None:
    labels = commands.add_parser("labels", help="export judged samples and feedback as labels (JSONL)")
    labels.add_argument(
        "logs", nargs="+", metavar="LOG", help="router log files (.gz read as such; - for stdin)"
    )
    labels.add_argument(
        "--store",
        help="state store URL of the kept prompts (quality.keep_prompts); without it, features only",
    )
    labels.add_argument("--rules", type=Path, help="rules file: tiers it does not define are reported")
    labels.add_argument("--out", type=Path, help="labels file to write (default: stdout)")
    labels.set_defaults(run=run_labels)


def run_labels(args: argparse.Namespace) -> int:
    from tier_router.errors import RouterError
    from tier_router.quality.export import LabelExport, write_labels
    from tier_router.settings import Settings

    tiers = None
    if args.rules is not None:
        from tier_router.cli import load_or_report

        rules = load_or_report(args.rules)
        if rules is None:
            return 1
        tiers = set(rules.tiers)
    export = LabelExport()
    try:
        for log in args.logs:
            export.read(log)
        wanted = export.missing_features()
        for log in args.logs:
            export.read_features(log, wanted)
        prompts: dict[str, dict[str, Any]] = {}
        if args.store:
            prompts = asyncio.run(_prompts(args.store, Settings.from_env(), export))
    except (RouterError, ValueError) as exc:  # ValueError: a store URL that is not one
        print(f"tier-router labels: {exc}", file=sys.stderr)
        return 1
    labels = list(export.labels(prompts))
    if args.out is None:
        write_labels(labels, sys.stdout)
    else:
        with args.out.open("w", encoding="utf-8") as out:
            write_labels(labels, out)
    _report(export, labels, tiers, str(args.out or "stdout"), sys.stderr)
    return 0


async def _prompts(url: str, settings: Any, export: Any) -> dict[str, dict[str, Any]]:
    from tier_router.quality.export import read_prompts
    from tier_router.store.factory import open_store

    store = open_store(url, settings=settings)
    try:
        return await read_prompts(store, export.request_ids(), export.stats)
    finally:
        await store.aclose()


def _report(export: Any, labels: list[Any], tiers: set[str] | None, out: str, err: IO[str]) -> None:
    print(export.stats.summary(out), file=err)
    if tiers is None:
        return
    unknown = Counter(tier for label in labels for tier in label.scores if tier not in tiers)
    for tier, count in sorted(unknown.items()):
        print(f"warning: {count} labels score tier {tier!r}, which the rules file does not define", file=err)
