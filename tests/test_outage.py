"""Components that carry on through a store outage log it once, and its end once."""

from __future__ import annotations

import logging

import pytest
from tier_router.outage import Outage


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage(logging.getLogger("tier_router.test"), "breaker", "treating breakers as closed")
    with caplog.at_level(logging.INFO, "tier_router.test"):
        outage.ok()  # nothing to say while the store works
        for _ in range(3):
            outage.failed("read", TimeoutError("slow"))
        assert outage.down
        outage.ok()
        outage.ok()
        outage.failed("write", OSError("gone"))  # a new outage
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "breaker store failed (read): slow; treating breakers as closed"),
        ("INFO", "breaker store reachable again"),
        ("WARNING", "breaker store failed (write): gone; treating breakers as closed"),
    ]
