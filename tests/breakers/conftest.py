"""Fixtures for the breaker tests: one fake clock, a counting memory store, a board on both."""

from __future__ import annotations

import pytest
from tier_router.breakers import BreakerBoard
from tier_router.store.memory import MemoryStore

from tests.breakers.support import CONFIG
from tests.support.clock import FakeClock
from tests.support.stores import Counting


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)  # the start of a failure window: tests never straddle one by chance


@pytest.fixture
def store(clock: FakeClock) -> Counting:
    return Counting(MemoryStore(clock=clock), pile_up=True)


@pytest.fixture
def board(store: Counting, clock: FakeClock) -> BreakerBoard:
    return BreakerBoard(store, CONFIG, clock=clock)
