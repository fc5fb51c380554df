"""Spend controls around one request: what happens before forwarding and after.

Before (in this order, each step only when its rules-file section is configured):
1. rate limit per router key (requests and estimated tokens per minute) → 429 + headers;
2. budget pacing: while today's spend runs ahead of pace, low (then normal) priority
   traffic moves one tier down; high priority never does;
3. response cache lookup (deterministic or opted-in, non-streamed requests) → a hit is
   served at zero cost;
4. hard cap: reserve the worst-case cost atomically → 429 `insufficient_quota`, or a retry
   on the `on_cap` tier.

After (always, from a `finally` path): settle the reservation with the actual cost priced
from the provider's `usage`, count it in today's ledger, store a cacheable answer.

Store trouble never fails a request here (each component fails open, logged once), except
budgets configured with `on_store_error: reject`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tier_router.errors import APIError
from tier_router.request_line import RequestLine
from tier_router.router_keys import KeyRecord
from tier_router.routing.engine import Decision, ModelRoute, Rules
from tier_router.spend import (
    BudgetGuard,
    CapReached,
    Limited,
    RateLimiter,
    Reservation,
    ResponseCache,
    SpendLedger,
    cache_key,
    cost_micro_usd,
    header_opt_in,
    is_cacheable,
    should_store,
)
from tier_router.spend.reservation import Bound, Unbounded, after_recovery, bound
from tier_router.spend.results import RequestResult
from tier_router.spend.shards import key_tag
from tier_router.store.base import Store, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from tier_router.schema import BudgetConfig, RateLimitConfig

log = logging.getLogger("tier_router.spend")
CACHED_MODEL_FIELD = "x_router_model"
"""Stored beside a cached answer so a hit can say which model produced it; removed when served."""


def store_unavailable_message(exc: StoreError) -> str:
    """The client's side of a failed budget reservation under `on_store_error: reject`:
    whether the failure looks transient, never the store's own message (it may name a file,
    a table or an endpoint)."""
    kind = "unreachable or too slow" if isinstance(exc, StoreUnavailable) else "failing"
    return f"Budget state is unavailable (the router's state store is {kind}); the request was not sent."


@dataclass(slots=True)
class Admission:
    """What `admit` decided for one request; handed back to `settle`."""

    decision: Decision
    key_id: str | None
    request_id: str = "-"
    limit_headers: dict[str, str] = field(default_factory=dict)
    """The rate limiter's `x-ratelimit-*` headers."""
    downgraded_from: str | None = None
    downgrade_reason: str | None = None
    cache: str | None = None
    """"hit" or "miss" when the response cache was consulted."""
    reservation: Reservation | None = None
    cache_key: str | None = None
    cache_ttl_s: int = 0
    cached: dict[str, Any] | None = None
    settled: bool = False

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.limit_headers)
        if self.cache is not None:
            headers["x-router-cache"] = self.cache
        if self.downgraded_from is not None:
            headers["x-router-downgraded-from"] = self.downgraded_from
            headers["x-router-downgrade-reason"] = self.downgrade_reason or ""
        return headers

    def downgrade(self, decision: Decision, from_tier: str | None, reason: str) -> None:
        self.decision = decision
        self.downgraded_from = from_tier or ""
        self.downgrade_reason = reason


def escalates(decision: Decision, body: dict[str, Any]) -> bool:
    """Whether the request may be escalated by a cascade: a streamed answer is checked (and may
    be escalated) only when its cascade holds the stream back."""
    cascade = decision.cascade
    return cascade is not None and (not body.get("stream") or cascade.hold_stream)


class SpendControls:
    """One per process: rate limiter, budget guard, ledger and cache over the shared store."""

    def __init__(self, store: Store, rules: Rules, *, region: str | None = None) -> None:
        """`region`: where this process runs, for `budgets.region_shares` (its share of each cap)."""
        spec = rules.spec
        self.rules = rules
        self.store = store
        self.budgets = spec.budgets.for_region(region)
        self.limiter: RateLimiter | None = None
        self.guard: BudgetGuard | None = None
        self.ledger = SpendLedger(
            store,
            retention_days=spec.budgets.retention_days,
            day_start_hour=spec.budgets.day_start_hour,
            shards=spec.budgets.shards,
        )
        self._configure(self.budgets, spec.limits)
        self.cache_config = spec.cache
        # The cache is the operator's choice (it costs store writes): off unless the rules
        # file enables it somewhere; the request header only widens or bypasses it there.
        uses_cache = spec.cache.enabled or any(
            o.enabled for o in (*spec.cache.tiers.values(), *spec.cache.rules.values())
        )
        self.cache = ResponseCache(store, max_item_bytes=spec.cache.max_item_bytes) if uses_cache else None

    def _configure(self, budgets: BudgetConfig, limits: RateLimitConfig) -> None:
        self.limiter = RateLimiter(self.store, limits) if limits.enabled else None
        self.guard = (
            BudgetGuard(self.store, budgets, tiers=set(self.rules.tiers), layouts=self.ledger.layouts)
            if budgets.enabled
            else None
        )

    def apply_keys(self, records: Iterable[KeyRecord]) -> None:
        """Per-key budgets and rate limits from the router keys file, on top of the rules file's
        (the keys file wins for the keys it names)."""
        budgets, limits = self.budgets, self.rules.spec.limits
        records = list(records)
        if budgets.per_key_daily_usd is not None:  # every key is capped: the day's pin carries its
            # legacy budget item, even with only reservations in flight (no ledger count yet)
            self.ledger.layouts.capped_keys.update(key_tag(r.name) for r in records)
        key_daily = {r.name: r.daily_usd for r in records if r.daily_usd is not None}
        limited = [r for r in records if r.rpm is not None or r.tpm is not None]
        if not key_daily and not limited:
            return
        from tier_router.schema import KeyRateLimit  # only for keys files that give per-key limits

        key_limits = {
            r.name: KeyRateLimit(requests_per_minute=r.rpm, tokens_per_minute=r.tpm) for r in limited
        }
        budgets = budgets.model_copy(update={"key_daily_usd": {**budgets.key_daily_usd, **key_daily}})
        limits = limits.model_copy(update={"keys": {**limits.keys, **key_limits}})
        self._configure(budgets, limits)

    # -- before forwarding ---------------------------------------------------------------

    async def admit(
        self,
        decision: Decision,
        body: dict[str, Any],
        key_id: str | None,
        headers: Mapping[str, str],
        *,
        request_id: str = "-",
        billed: Bound | None = None,
    ) -> Admission:
        """Raises APIError (429 / 503) when the request must not go out. `request_id` names
        the budget reservation (settled and rolled back by it). `billed`: the bound of a body
        that is not a chat completion (an embeddings request: its input tokens), which is
        never cached; None for chat (`spend.reservation.bound` reads the body)."""
        admission = Admission(decision, key_id, request_id=request_id)
        features = decision.features
        if self.limiter is not None:
            choices = body.get("n") or 1  # an int in 1..128 or absent: `params.check` ran first
            verdict = await self.limiter.check(
                key_id or "anonymous", features.conversation_tokens + choices * (features.max_tokens or 0)
            )
            if isinstance(verdict, Limited):
                extra = {"x-should-retry": "false"} if verdict.too_large else {}
                raise APIError(
                    429, verdict.message, code="rate_limit_exceeded", headers={**verdict.headers, **extra}
                )
            admission.limit_headers.update(verdict.headers)
        if self.guard is not None:
            pace = await self.guard.pace(decision.tier, decision.priority, key_id)
            if pace.downgraded and pace.tier is not None and self.rules.same_kind(decision.tier, pace.tier):
                retiered = self.rules.retier(decision, pace.tier, f"pacing: {pace.reason}")
                admission.downgrade(retiered, pace.downgraded_from, pace.reason or "")
        if billed is None and self.cache is not None and await self._cached(admission, body, headers):
            return admission
        if self.guard is not None:
            await self._reserve(admission, body, billed)
        return admission

    async def _cached(self, admission: Admission, body: dict[str, Any], headers: Mapping[str, str]) -> bool:
        config = self.cache_config
        decision = admission.decision
        policy = config.policy(decision.tier, decision.rule_name)
        opt_in = header_opt_in(headers.get(config.header)) if config.header else None
        if not policy.enabled or not is_cacheable(body, opt_in=opt_in):
            return False
        scope = (admission.key_id or "") if config.scope == "key" else ""
        chain = [f"{r.name}={r.provider_name}/{r.model_id}" for r in decision.candidates]
        admission.cache_key = cache_key(body, chain, scope=scope)
        admission.cache_ttl_s = policy.ttl_s
        admission.cached = await self.cache.get(admission.cache_key)  # type: ignore[union-attr]
        admission.cache = "hit" if admission.cached is not None else "miss"
        return admission.cached is not None

    async def _reserve(self, admission: Admission, body: dict[str, Any], billed: Bound | None) -> None:
        guard = self.guard
        assert guard is not None
        try:  # what the body can be billed: an upper bound by construction (see spend/budget.py)
            billed = billed or bound(body, guard.config.image_tokens)
        except Unbounded as exc:
            if guard.capped(admission.key_id):
                raise APIError(400, str(exc), code="invalid_request", param=exc.param) from None
            billed = None  # no cap applies to this key: nothing to hold
        for _ in range(2):  # the second pass is the `on_cap: tier:<name>` retry
            decision = admission.decision
            worst = 0 if billed is None else self._worst(decision, body, billed)
            try:
                outcome = await guard.reserve(admission.key_id, worst, holder=admission.request_id)
            except StoreError as exc:
                # Every store failure, transient or not (missing table, no credentials, a
                # read-only or broken SQLite file): `on_store_error: reject` promises a 503.
                # The detail is logged by the guard; the client gets no internal paths.
                raise APIError(503, store_unavailable_message(exc), code="store_unavailable") from None
            if isinstance(outcome, Reservation):
                admission.reservation = outcome
                return
            cap: CapReached = outcome
            fallback = cap.fallback_tier
            if fallback and decision.tier != fallback and self.rules.same_kind(decision.tier, fallback):
                retiered = self.rules.retier(decision, fallback, "daily budget cap reached")
                admission.downgrade(retiered, decision.tier, "daily budget cap reached")
                continue
            raise APIError(
                429,
                cap.message,
                type="insufficient_quota",
                code="budget_exceeded",
                headers={"retry-after": str(cap.retry_after_s), "x-should-retry": "false"},
            )

    def _worst(self, decision: Decision, body: dict[str, Any], billed: Bound) -> int:
        """The reservation: the worst case on every tier the request may be answered by (its
        own, and each cascade step when it may escalate), each with the mid-stream recoveries
        a one-choice stream may take (`routing.max_stream_recoveries`)."""
        guard = self.guard
        assert guard is not None
        chains = [decision.candidates]
        if escalates(decision, body):
            chains += self.rules.cascade_path(decision)
        n = body.get("n")
        recoveries = (
            self.rules.spec.routing.max_stream_recoveries if body.get("stream") and n in (None, 1) else 0
        )
        worst = 0
        for chain in chains:
            worst += guard.reservation(chain, billed)
            if recoveries:
                again = after_recovery(billed, chain, guard.config.default_max_output_tokens)
                worst += recoveries * guard.reservation(chain, again)
        return worst

    # -- after forwarding ----------------------------------------------------------------

    @staticmethod
    def price(route: ModelRoute | None, usage: Mapping[str, Any] | None) -> int | None:
        """The cost in micro-dollars, or None when the provider reported no usage."""
        if route is None or not usage:
            return None
        return cost_micro_usd(route.price, usage)

    async def settle(
        self,
        admission: Admission,
        route: ModelRoute | None,
        cost: int | None,
        *,
        completion: dict[str, Any] | None = None,
        line: RequestLine | None = None,
    ) -> int:
        """Settle, count and cache; returns what was charged (what the ledger counted). Exactly
        once per admission (later calls are no-ops that return 0); never raises. `cost` None
        (a provider answered without usage) charges the reservation in full — the
        conservative choice; 0 for failed requests and cache hits. `line`, the request's line
        once its outcome and latency are known, gives the ledger its results (tier, rule, key,
        arm, model: requests, latency, errors, escalations, successes); without it, only the
        cost is counted.
        """
        if admission.settled:
            return 0
        admission.settled = True
        cached = admission.cached is not None
        if cached:
            cost = 0
        reservation = admission.reservation
        charged = cost
        if reservation is not None:  # what the settle charges: the reservation when cost is None
            charged = (
                reservation.actual if reservation.settled else reservation.reserved if cost is None else cost
            )
        decision = admission.decision
        model = route.name if route else None
        counts = self.ledger.deltas(
            cost=charged or 0,
            tier=decision.tier,
            model=model,
            rule=decision.label,
            router_key=admission.key_id,
            cache_hit=cached,
            result=None if line is None else RequestResult.of(line, cost=charged or 0, model=model),
        )
        # With a reservation, its settle writes the counters too (one write for both).
        counted = False
        if reservation is not None and self.guard is not None:
            counted = await self.guard.settle(reservation, cost, counts=counts)
        if not counted:
            try:
                await self.ledger.record_deltas(
                    reservation.day if reservation else self.ledger.today_key(), counts
                )
            except StoreError as exc:
                log.warning("spend ledger write failed: %s", exc)
        charged = charged or 0
        if (
            completion is not None
            and admission.cache_key is not None
            and not cached
            and self.cache is not None
            and should_store(completion)
        ):
            stored = {**completion, CACHED_MODEL_FIELD: route.name} if route is not None else completion
            await self.cache.put(admission.cache_key, stored, admission.cache_ttl_s)
        return charged

    async def status(self) -> dict[str, Any]:
        report = await self.ledger.today()
        data: dict[str, Any] = {"spend": report.as_dict()}
        if self.guard is not None:
            data["budgets"] = await self.guard.status(list(self.guard.config.key_daily_usd))
        return data
