"""Sharded day items on DynamoDB (moto): settle writes per second on 1 vs N shards, and exact sums.

    .venv/bin/python bench/shard_throughput.py [--shards 1,4] [--writers 32] [--writes 300]
                                               [--rounds 3] [--json PATH]

Each writer is one coroutine doing what a request's budget does on the day items, through the
real `DynamoDBStore` (signed HTTP to moto in its own process, 127.0.0.1): `BudgetGuard.reserve`
(one conditional UpdateItem on a shard: global and key cap, a hold) then `BudgetGuard.settle` with
the ledger's counters (one UpdateItem: hold released, both scopes, ledger fields) — two writes per
request, `--writes` requests in all, `--writers` at a time. Rows for 1 and N shards alternate
within each round (the machine is shared and noisy); medians and spread over the rounds.

After each run the shards are read back and summed: total, requests, committed, spent and the
key's fields must equal what was sent, exactly (the bench fails otherwise).

What moto shows is NOT DynamoDB's limit: moto has no per-item or per-partition throttling, and
serializes requests in one process, so 1 and N shards run at about the same rate here. What
DynamoDB's documented limit implies is computed, not measured: one partition (so one item)
takes at most 1,000 write units per second, and a write of an item of S bytes costs ceil(S / 1 KB)
units; with the item sizes measured here (after the run), one item sustains
1,000 / ceil(S / 1 KB) writes/s, N shards N times that (a table's partitions split further as it
grows; on-demand tables start at 4,000 WCU/s per table unless pre-warmed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "handler")]

from tier_router.schema import BudgetConfig  # noqa: E402
from tier_router.spend.budget import BudgetGuard, Reservation  # noqa: E402
from tier_router.spend.counters import SpendLedger  # noqa: E402
from tier_router.store.dynamodb import DynamoDBStore  # noqa: E402

OUT = ROOT / "bench" / "out"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
WORST, COST = 2_000, 1_234  # µ$ reserved and charged per request
KEYS = ("team-a", "team-b", "team-c", "team-d")
PER_REQUEST_WRITES = 2


def item_bytes(value: dict[str, Any], key: str) -> int:
    """DynamoDB's item size: attribute names' UTF-8 bytes + numbers (1 byte + 1 per 2 digits) +
    strings' bytes, plus the key and the expiry attribute."""
    size = len("pk") + len(key.encode()) + len("expires_at") + 6
    for name, v in value.items():
        size += len(name.encode())
        size += len(v.encode()) if isinstance(v, str) else 1 + math.ceil(len(str(abs(v))) / 2)
    return size


async def run_one(moto: Any, shards: int, writers: int, writes: int) -> dict[str, Any]:
    table = moto.create_table()
    store = DynamoDBStore(table, endpoint=moto.endpoint, region="us-east-1", timeout_s=30)
    config = BudgetConfig(daily_usd=10_000, per_key_daily_usd=5_000, shards=shards)
    guard = BudgetGuard(store, config)
    ledger = SpendLedger(store, shards=shards)
    limit = asyncio.Semaphore(writers)
    failures = 0

    async def request(i: int) -> None:
        nonlocal failures
        key = KEYS[i % len(KEYS)]
        async with limit:
            held = await guard.reserve(key, WORST, holder=f"r{i}")
            if not isinstance(held, Reservation) or held.uncounted:
                failures += 1
                return
            counts = ledger.deltas(cost=COST, tier="standard", model="m", rule="r", router_key=key)
            if not await guard.settle(held, COST, counts=counts):
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(request(i) for i in range(writes)))
    seconds = time.perf_counter() - started
    day = ledger.today_key()
    items = await store.get_many((await guard.layouts.pinned(day)).items)  # as pinned (spend.layout)
    report = await ledger.report(day)
    sums = {f: sum(int(v.get(f, 0)) for v in items.values()) for f in ("committed", "spent")}
    expected = writes * COST
    exact = (
        failures == 0
        and report.total == expected
        and report.requests == writes
        and sums == {"committed": expected, "spent": expected}
        and all(report.by_key[k] == expected // len(KEYS) for k in KEYS)
    )
    sizes = [item_bytes(v, k) for k, v in items.items()]
    spread = sorted(int(v.get("requests", 0)) for v in items.values())
    await store.aclose()
    return {
        "shards": shards,
        "requests": writes,
        "seconds": round(seconds, 3),
        "requests_per_s": round(writes / seconds, 1),
        "writes_per_s": round(PER_REQUEST_WRITES * writes / seconds, 1),
        "exact_sums": exact,
        "failures": failures,
        "requests_per_shard": spread,
        "item_bytes_max": max(sizes),
        "wcu_per_write": math.ceil(max(sizes) / 1024),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.moto_process import MotoProcess

    os.environ.update(AWS_ENV)
    shard_counts = [int(s) for s in args.shards.split(",")]
    rows: dict[int, list[dict[str, Any]]] = {n: [] for n in shard_counts}
    loads = []
    with contextlib.ExitStack() as stack:
        moto = MotoProcess()
        stack.callback(moto.stop)
        for r in range(args.rounds):
            order = shard_counts if r % 2 == 0 else shard_counts[::-1]
            for n in order:
                loads.append(os.getloadavg()[0])
                rows[n].append(await run_one(moto, n, args.writers, args.writes))
                print(json.dumps(rows[n][-1]), flush=True)
    summary = []
    for n, runs in rows.items():
        rates = [r["writes_per_s"] for r in runs]
        wcu = max(r["wcu_per_write"] for r in runs)
        per_item = 1000 / wcu  # DynamoDB: 1,000 WCU/s per partition
        summary.append(
            {
                "shards": n,
                "moto_writes_per_s_median": statistics.median(rates),
                "moto_writes_per_s_range": [min(rates), max(rates)],
                "exact_sums": all(r["exact_sums"] for r in runs),
                "item_bytes_max": max(r["item_bytes_max"] for r in runs),
                "wcu_per_write": wcu,
                "dynamodb_writes_per_s_limit": round(per_item * n),
                "dynamodb_requests_per_s_limit": round(per_item * n / PER_REQUEST_WRITES),
            }
        )
    return {
        "rows": rows,
        "summary": summary,
        "load_1min": loads,
        "args": vars(args) | {"json": str(args.json)},
    }


def table(summary: list[dict[str, Any]]) -> str:
    head = (
        "| shards | moto writes/s, median (range) | sums exact | item size max | WCU/write |"
        " DynamoDB limit writes/s (requests/s) |"
    )
    lines = [head, "|---:|---:|---|---:|---:|---:|"]
    for s in summary:
        lo, hi = s["moto_writes_per_s_range"]
        lines.append(
            f"| {s['shards']} | {s['moto_writes_per_s_median']:g} ({lo:g}-{hi:g}) | {s['exact_sums']} |"
            f" {s['item_bytes_max']} B | {s['wcu_per_write']} | {s['dynamodb_writes_per_s_limit']:,}"
            f" ({s['dynamodb_requests_per_s_limit']:,}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="1,4")
    parser.add_argument("--writers", type=int, default=32, help="requests in flight at once")
    parser.add_argument("--writes", type=int, default=300, help="requests per run (2 writes each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=OUT / "shard_throughput.json")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print("\n" + table(report["summary"]))
    print(f"load (1 min) per run: {report['load_1min']}; {args.json}")
    if not all(s["exact_sums"] for s in report["summary"]):
        raise SystemExit("sums across shards were not exact")


if __name__ == "__main__":
    main()
