"""The quality loop's part of every request: built once per process (`Gateway`), called by
the lifecycle once a request is settled and logged — after its response went out.

    loop = QualityLoop()
    loop.facts = Facts.build(store, rules.spec.quality)   # Gateway; None parts: that feature is off
    await loop.finished(exchange)         # keep feedback facts; hand a sample to the judge

Nothing here may raise into the lifecycle or delay the client: `Lifecycle._finish` calls
`finished` after the request line is written, and logs anything it raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tier_router.request_line import EMBEDDINGS

if TYPE_CHECKING:
    from tier_router.lifecycle import Exchange
    from tier_router.quality.facts import Facts
    from tier_router.quality.runner import Judging


class QualityLoop:
    def __init__(self) -> None:
        self.facts: Facts | None = None  # quality.facts: facts for POST /v1/feedback (feedback.enabled)
        self.judging: Judging | None = None
        """quality.runner: sampled judging (quality.judge and a reference tier)."""

    @property
    def active(self) -> bool:
        return self.facts is not None or self.judging is not None

    async def finished(self, exchange: Exchange) -> None:
        """A request is settled and logged: keep its facts, and judge it if it was sampled.
        Embeddings are neither judged nor open to feedback: the quality loop is about answers."""
        if exchange.line.endpoint == EMBEDDINGS:
            return
        if self.judging is not None and exchange.sampled is not None:
            self.judging.submit(exchange)  # never raises, never waits
        if self.facts is not None:
            await self.facts.keep(exchange)
