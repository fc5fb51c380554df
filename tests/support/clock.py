"""Time under the test's control: a settable clock, and wall-clock instants as Unix seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class FakeClock:
    """`clock()` is the fake now; move it with `advance`. Starts at `now`, by default the real
    time to the whole second (so epoch values look real)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: float = 0) -> float:
    """Unix seconds for a UTC wall-clock time."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() + second
