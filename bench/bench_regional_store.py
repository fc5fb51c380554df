"""What a shared table's per-region namespace costs a request: `RegionalStore` (every key under
`<region>:`) over the bare store, on the calls a request makes.

    .venv/bin/python bench/bench_regional_store.py [--n 3000] [--rounds 7]

Per round and backend (memory://, and sqlite:// on a temp file, the local default), the bare
store and the wrapped one alternate: n awaited `add`s (a counter) and n `get_many`s of 5 keys
(the per-request read). Prints the median and the spread (min-max) of µs per call over the
rounds, and the 1-minute load average (this machine is shared: compare within one run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tier_router.store.base import Store
from tier_router.store.memory import MemoryStore
from tier_router.store.regional import RegionalStore
from tier_router.store.sqlite import SQLiteStore

KEYS = [f"breaker:model-{i}" for i in range(5)]


async def per_call_us(store: Store, n: int) -> tuple[float, float]:
    started = time.perf_counter()
    for _ in range(n):
        await store.add("spend:2026-12-07", {"total": 7, "requests": 1})
    added = time.perf_counter()
    for _ in range(n):
        await store.get_many(KEYS)
    done = time.perf_counter()
    return (added - started) / n * 1e6, (done - added) / n * 1e6


async def compare(name: str, make: Callable[[], Store], n: int, rounds: int) -> None:
    bare, wrapped = make(), make()
    regional = RegionalStore(wrapped, "eu-west-1")
    for key in KEYS:
        await bare.put(key, {"state": "closed"})
        await regional.put(key, {"state": "closed"})
    results: dict[str, list[tuple[float, float]]] = {"bare": [], "regional": []}
    for _ in range(rounds):
        results["bare"].append(await per_call_us(bare, n))
        results["regional"].append(await per_call_us(regional, n))
    for label, runs in results.items():
        for op, index in (("add", 0), ("get_many(5)", 1)):
            values = [run[index] for run in runs]
            print(
                f"| {name} | {label} | {op} | {statistics.median(values):.1f} "
                f"| {min(values):.1f}-{max(values):.1f} |"
            )
    await bare.aclose()
    await regional.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}")
    print("| store | keys | call | µs/call median | spread |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(100))
        await compare("memory", MemoryStore, args.n, args.rounds)
        await compare(
            "sqlite", lambda: SQLiteStore(Path(tmp) / f"state-{next(counter)}.db"), args.n // 3, args.rounds
        )
    print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
