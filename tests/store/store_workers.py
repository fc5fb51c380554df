"""Process entry points for the cross-process integrity tests (importable under spawn).

Each process opens its OWN store from the URL, as every copy of the gateway would.
`env` is applied first: a forkserver child inherits the server's environment, not the
test's (which holds the fake AWS credentials).
"""

from __future__ import annotations

import asyncio
import os
from multiprocessing.synchronize import Barrier
from typing import Any

from tier_router.settings import Settings
from tier_router.store.factory import open_store


def NO_DEADLINE() -> Settings:
    """This process's settings with a deadline no emulator under 8 processes' load reaches:
    these tests are about atomicity, not about slow stores."""
    return Settings.from_env({**os.environ, "TIER_ROUTER_STORE_TIMEOUT_S": "60"})


def add_many(env: dict[str, str], url: str, key: str, count: int, barrier: Barrier) -> None:
    """`count` sequential atomic increments of one key."""
    os.environ.update(env)

    async def run() -> None:
        store = open_store(url, settings=NO_DEADLINE())
        try:
            await store.ping()  # connect before the barrier so all start hammering together
            barrier.wait()
            for _ in range(count):
                await store.add(key, {"n": 1})
        finally:
            await store.aclose()

    asyncio.run(run())


def race_put_if(
    env: dict[str, str], url: str, keys: list[str], me: str, barrier: Barrier, results: Any
) -> None:
    """Try to claim every key with put_if(expected owner absent); report the keys won."""
    os.environ.update(env)

    async def run() -> list[str]:
        store = open_store(url, settings=NO_DEADLINE())
        try:
            await store.ping()
            barrier.wait()
            won = []
            for key in keys:
                if await store.put_if(key, {"owner": me}, expected={"owner": None}):
                    won.append(key)
            return won
        finally:
            await store.aclose()

    results.put((me, asyncio.run(run())))
