"""`tier-router quality`: the quality report (judged samples, feedback) from the state store.

    tier-router quality [--rules FILE] [--store URL] [--days N] [--json]

The rules file gives the budget day (`budgets.day_start_hour`) and the reference tier; the
store is `--store`, else the configured one (`Settings.from_env`), as for `tier-router status`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_command(commands: Any) -> None:
    quality = commands.add_parser("quality", help="answer quality per rule and tier (judged, feedback)")
    quality.add_argument(
        "--rules", type=Path, help="rules file (default: $TIER_ROUTER_RULES or rules/router.yaml)"
    )
    quality.add_argument(
        "--store", help="state store URL (default: $TIER_ROUTER_STORE or the local SQLite file)"
    )
    quality.add_argument(
        "--days", type=int, default=1, metavar="N", help="the last N budget days, today included (default 1)"
    )
    quality.add_argument("--json", action="store_true", help="print one JSON object")
    quality.set_defaults(run=run_quality)


def run_quality(args: argparse.Namespace) -> int:
    import asyncio

    from tier_router.admission import SpendControls
    from tier_router.cli import load_or_report
    from tier_router.errors import StoreError
    from tier_router.quality.report import read, render
    from tier_router.settings import Settings
    from tier_router.spend.counters import MAX_DAYS
    from tier_router.store.factory import open_store

    if not 1 <= args.days <= MAX_DAYS:
        print(f"quality: --days must be 1..{MAX_DAYS}", file=sys.stderr)
        return 2
    rules = load_or_report(args.rules)
    if rules is None:
        return 1
    settings = Settings.from_env()
    store_url = args.store or settings.store_url

    async def collect() -> dict[str, Any]:
        store = open_store(store_url, settings=settings)
        try:
            ledger = SpendControls(store, rules).ledger  # the router's own: its day, its shards
            report = await read(ledger, days=args.days, reference=rules.spec.quality.reference)
            return report.as_dict()
        finally:
            await store.aclose()

    try:
        data = asyncio.run(collect())
    except (StoreError, ValueError) as exc:
        print(f"cannot read the state store {store_url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(data) if args.json else render(data))
    return 0
