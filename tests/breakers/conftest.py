"""Fixtures for the breaker tests: one fake clock, a counting memory store, a board on both."""

from __future__ import annotations

import pytest
from tier_router.breakers import BreakerBoard
from tier_router.store.memory import MemoryStore

from tests.breakers.support import CONFIG, CountingStore
from tests.store.support import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    clock = FakeClock()
    clock.now = 1_800_000_000.0  # the start of a failure window, so tests never straddle one by chance
    return clock


@pytest.fixture
def store(clock: FakeClock) -> CountingStore:
    return CountingStore(MemoryStore(clock=clock))


@pytest.fixture
def board(store: CountingStore, clock: FakeClock) -> BreakerBoard:
    return BreakerBoard(store, CONFIG, clock=clock)
