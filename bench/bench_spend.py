"""Spend-control overhead per request: what budgets, limits and the ledger add.

    .venv/bin/python bench/bench_spend.py [--n 2000]

One awaited request at a time, p50/p99 of
- pure CPU: `cost_micro_usd` on a cached-usage dict, `cache_key` of a small body;
- the hot path on memory:// and sqlite:// (temp file): limiter.check + guard.pace (warm
  cache) + guard.reserve (key + global) + guard.settle + ledger.record — 5 store writes.
DynamoDB is not measured here: its cost is ~5 × the `add` latency in bench_store.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "handler"))

from tier_router.schema import BudgetConfig, Price, RateLimitConfig  # noqa: E402
from tier_router.spend import (  # noqa: E402
    BudgetGuard,
    RateLimiter,
    Reservation,
    SpendLedger,
    cache_key,
    cost_micro_usd,
)
from tier_router.store.base import Store  # noqa: E402
from tier_router.store.memory import MemoryStore  # noqa: E402
from tier_router.store.sqlite import SQLiteStore  # noqa: E402

PRICE = Price(input=3.0, cached_input=0.3, output=15.0)
USAGE = {
    "prompt_tokens": 12_000,
    "completion_tokens": 800,
    "total_tokens": 12_800,
    "prompt_tokens_details": {"cached_tokens": 9_000, "cache_write_tokens": 1_000},
}
BODY = {
    "model": "auto",
    "temperature": 0,
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello " * 50}],
}


def stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2] * 1e6
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e6
    return f"p50 {p50:8.1f} µs   p99 {p99:8.1f} µs"


async def timed(n: int, op: Callable[[int], Awaitable[Any]]) -> list[float]:
    for i in range(20):
        await op(-1 - i)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await op(i)
        samples.append(time.perf_counter() - started)
    return samples


async def hot_path(store: Store, n: int) -> list[float]:
    config = BudgetConfig(daily_usd=1e6, per_key_daily_usd=1e5)
    guard = BudgetGuard(store, config)
    limiter = RateLimiter(store, RateLimitConfig(rpm=10**9, tpm=10**12))
    ledger = SpendLedger(store)

    async def one(i: int) -> None:
        key = f"key-{i % 10}"
        await limiter.check(key, 13_000)
        await guard.pace("premium", "normal", key)
        reservation = await guard.reserve(key, 500_000)
        assert isinstance(reservation, Reservation)
        cost = cost_micro_usd(PRICE, USAGE)
        await guard.settle(reservation, cost)
        await ledger.record(reservation.day, cost=cost, tier="premium", model="m", rule="r", router_key=key)

    return await timed(n, one)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    n = parser.parse_args().n

    async def pricing(_: int) -> None:
        cost_micro_usd(PRICE, USAGE)

    async def keying(_: int) -> None:
        cache_key(BODY, "premium", scope="k")

    print(f"cost_micro_usd            {stats(await timed(n, pricing))}")
    print(f"cache_key                 {stats(await timed(n, keying))}")
    print(f"hot path, memory://       {stats(await hot_path(MemoryStore(), n))}")
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.db")
        try:
            print(f"hot path, sqlite://       {stats(await hot_path(store, n))}")
        finally:
            await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
