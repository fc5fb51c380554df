"""What feedback on a request counts against: its router key, tier, rule, model and arm, kept in
the shared store for `quality.feedback.window_days` after the request was answered.

    facts = Facts(store, window_days=7)   # built in Gateway when quality.feedback.enabled
    await facts.keep(exchange)            # QualityLoop.finished: one store.put, answered only
    fact = await facts.read(request_id)   # None: unknown, expired, or never answered
    await facts.claim(request_id)         # True for the first feedback on it, False after

Item `fact:<request_id>` = {key?, tier?, rule?, model?, arm?, open: 1}: strings, absent facts
left out; `open` says no feedback has been counted yet. The claim is ONE conditional write —
`add({"feedback": 1}, release="open")`, which adds only while `open` is there and removes it —
so two posts racing for the same request count once, and an expired or unknown item is never
written to. Only chat requests the router answered (`ok`, `cache_hit`) keep facts: a failed or
refused request, or any other endpoint's, has none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tier_router.request_line import Outcome
from tier_router.spend.counters import DAY_S
from tier_router.store.base import Store, StoreError, Value

if TYPE_CHECKING:
    from tier_router.lifecycle import Exchange
    from tier_router.schema.judging import QualitySpec

log = logging.getLogger("tier_router")
PREFIX = "fact:"
OPEN = "open"
"""Present until the request's feedback is claimed."""
CLAIMED = "feedback"
"""Added (1) by the claim, taken away again by `reopen`."""
ANSWERED = (Outcome.OK, Outcome.CACHE_HIT)
FIELDS = ("key", "tier", "rule", "model", "arm")


@dataclass(frozen=True, slots=True)
class Fact:
    """One answered request, as feedback counts it."""

    key: str | None = None
    """The router key's name (None: the router runs without keys)."""
    tier: str | None = None
    """The tier that answered (after any cascade escalation)."""
    rule: str | None = None
    model: str | None = None
    """The model that answered."""
    arm: str | None = None
    """"<experiment>/<arm>", as the results count it."""
    open: bool = True
    """No feedback counted on it yet."""

    @classmethod
    def of(cls, exchange: Exchange) -> Fact | None:
        """The facts of a finished exchange; None unless it is a chat request that was answered."""
        line = exchange.line
        if exchange.decision is None or line.outcome not in ANSWERED:
            return None
        route = exchange.route
        return cls(
            key=line.key,
            tier=line.tier,
            rule=line.rule,
            model=route.name if route is not None else None,
            arm=line.arm_label,
        )

    def dims(self) -> dict[str, str]:
        """The dimension values its feedback counts on (`quality.counts`)."""
        values = {"tier": self.tier, "rule": self.rule, "model": self.model, "arm": self.arm}
        return {dim: name for dim, name in values.items() if name}

    def item(self) -> Value:
        item: Value = {name: value for name in FIELDS if (value := getattr(self, name))}
        if self.open:
            item[OPEN] = 1
        return item

    @classmethod
    def read(cls, item: Mapping[str, object]) -> Fact:
        """An item read back: a field of another type reads as absent (the store is data)."""

        def text(name: str) -> str | None:
            value = item.get(name)
            return value if isinstance(value, str) and value else None

        return cls(*(text(name) for name in FIELDS), open=OPEN in item)


def fact_key(request_id: str) -> str:
    return f"{PREFIX}{request_id}"


class Facts:
    """The facts of answered requests, for `POST /v1/feedback` (module doc)."""

    def __init__(self, store: Store, window_days: int, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.window_s = window_days * DAY_S
        self.clock = clock

    @classmethod
    def build(cls, store: Store, spec: QualitySpec) -> Facts | None:
        """None when feedback is off: then nothing is written per request."""
        return cls(store, spec.feedback.window_days) if spec.feedback.enabled else None

    async def keep(self, exchange: Exchange) -> None:
        """Keep an answered request's facts (one put). A store failure loses only them: the
        store logs its outage once, and feedback on that request will be a 404."""
        fact = Fact.of(exchange)
        if fact is None:
            return
        try:
            await self.store.put(
                fact_key(exchange.request_id), fact.item(), expires_at=self.clock() + self.window_s
            )
        except StoreError as exc:
            log.debug("feedback facts of %s not kept: %s", exchange.request_id, exc)

    async def read(self, request_id: str) -> Fact | None:
        """Raises StoreError when the store fails."""
        item = await self.store.get(fact_key(request_id))
        return None if item is None else Fact.read(item)

    async def claim(self, request_id: str) -> bool:
        """The one feedback a request takes: True for the first caller only (atomic)."""
        done = await self.store.add(fact_key(request_id), {CLAIMED: 1}, release=OPEN)
        return done is not None

    async def reopen(self, request_id: str) -> None:
        """Give the claim back (its feedback could not be counted): only on a live, claimed item."""
        await self.store.add(fact_key(request_id), {OPEN: 1}, release=CLAIMED)
