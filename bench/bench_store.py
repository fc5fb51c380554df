"""State-store latency: what a request pays for budgets and breakers on each backend.

    .venv/bin/python bench/bench_store.py [--n 500] [--json bench/out/store.json]

Measures, one awaited call at a time, p50/p99 of
- get_many of 5 keys (the per-request read), add (a budget increment), put_if (a lease),
on memory://, sqlite:// (temp file) and dynamodb:// against moto on 127.0.0.1 (started
in this process; numbers are moto + loopback HTTP, NOT real DynamoDB latency), then the
breaker snapshot of 5 (closed) candidates — one get_many of 10 keys: state items plus
the current window's failure counters — with the in-process cache off vs warm.

Prints a Markdown table (for bench/RESULTS.md) and a JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support.moto_server (dev-only moto helper)

from tier_router.breakers import BreakerBoard, BreakerConfig  # noqa: E402
from tier_router.settings import environment_credentials  # noqa: E402
from tier_router.store.base import Store  # noqa: E402
from tier_router.store.dynamodb import DynamoDBStore  # noqa: E402
from tier_router.store.memory import MemoryStore  # noqa: E402
from tier_router.store.sqlite import SQLiteStore  # noqa: E402

from tests.support.moto_server import FAKE_ENV, MotoServer  # noqa: E402

ITEMS = [f"budget:user:{i}" for i in range(5)]  # 5 present items, read together per request
CANDIDATES = [f"provider:p{i}" for i in range(5)]  # 5 breakers, all closed (the common case)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def micros(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6, 1)

    return {"p50_us": micros(0.50), "p99_us": micros(0.99), "n": len(samples)}


async def timed(n: int, op: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    for i in range(min(20, n)):  # warm-up: connections, JIT-ish caches, SQLite pages
        await op(-1 - i)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await op(i)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


async def bench_store(store: Store, n: int) -> dict[str, Any]:
    for key in ITEMS:
        await store.put(key, {"spent": 123_456_789, "requests": 42, "period": "2025-06"})
    run = uuid.uuid4().hex[:8]
    out = {
        "get_many_5": await timed(n, lambda i: store.get_many(ITEMS)),
        "add": await timed(n, lambda i: store.add("budget:user:1", {"spent": 1250, "requests": 1})),
        "put_if": await timed(
            n, lambda i: store.put_if(f"lease:{run}:{i}", {"owner": "me"}, expected={"owner": None})
        ),
    }
    uncached = BreakerBoard(store, BreakerConfig(cache_ttl_s=0))
    cached = BreakerBoard(store, BreakerConfig(cache_ttl_s=60))
    await cached.snapshot(CANDIDATES)
    out["snapshot_uncached"] = await timed(n, lambda i: uncached.snapshot(CANDIDATES))
    out["snapshot_cached"] = await timed(n, lambda i: cached.snapshot(CANDIDATES))
    return out


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "sqlite": __import__("sqlite3").sqlite_version,
    }


def markdown(results: dict[str, dict[str, Any]]) -> str:
    ops = ["get_many_5", "add", "put_if", "snapshot_uncached", "snapshot_cached"]
    lines = [
        "| backend | " + " | ".join(f"{op} p50 / p99 (µs)" for op in ops) + " |",
        "|---|" + "---|" * len(ops),
    ]
    for backend, row in results.items():
        cells = [f"{row[op]['p50_us']:,.0f} / {row[op]['p99_us']:,.0f}" for op in ops]
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main(n: int) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}

    results["memory"] = await bench_store(MemoryStore(), n)

    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SQLiteStore(Path(tmp) / "state.db")
        results["sqlite"] = await bench_store(sqlite, n)
        await sqlite.aclose()

    moto = MotoServer().start()
    try:
        moto.create_table("bench")
        credentials = functools.partial(environment_credentials, FAKE_ENV)  # fake ones, never real
        dynamo = DynamoDBStore("bench", endpoint=moto.endpoint, credentials=credentials)
        results["dynamodb (moto, loopback)"] = await bench_store(dynamo, n)
        await dynamo.aclose()
    finally:
        moto.stop()
    return {"machine": machine(), "n": n, "results": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="timed calls per operation")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    report = asyncio.run(main(args.n))
    m = report["machine"]
    print(f"nproc={m['nproc']} machine={m['machine']} python={m['python']} sqlite={m['sqlite']} n={args.n}\n")
    print(markdown(report["results"]))
    print()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
