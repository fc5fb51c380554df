"""Small test helpers shared by the store and breaker tests."""

from __future__ import annotations

import time


class FakeClock:
    """A settable clock. Starts at real (whole-second) time so epoch values look real."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
