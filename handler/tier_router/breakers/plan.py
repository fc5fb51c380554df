"""Circuit breakers as the forwarder sees them: which candidates to try, and what to record.

Per request: `plan = await health.plan(candidates)` (one snapshot of their breakers), then
`plan.next()` until it returns None, reporting each attempt with `success`, `failure` or
`release`. `AlwaysHealthy` is the same protocol without breakers.

Two breakers guard each candidate: one per provider (`provider:<name>`) and one per model
(`model:<name>`). Failures that say the endpoint itself is down — connect errors, connections
reset or dropped — count against the provider, so all its models are skipped together;
everything one model can cause alone — timeouts (a slow model), 429, 5xx, an invalid answer, a
rejected key — counts against the model, so one slow or overloaded model does not take its
provider's others down (the table is `fallback.VERDICTS`).

A probe holds its lease for `probe_lease_s(route)`: at least as long as the attempt may take
(the larger of the provider's `total` and `first_token` timeouts, plus a margin to record the
outcome), so a slow probe's lease cannot expire under it and let a second probe in.

A candidate is tried when both breakers admit it. If none is admitted because every
breaker is open, the least-recently-failed candidate is tried anyway: one request to the
provider most likely to have recovered beats failing outright.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from tier_router.breakers.board import CLOSED, BreakerBoard, BreakerView, last_failure, least_recently_failed

if TYPE_CHECKING:
    from tier_router.routing.engine import ModelRoute

Level = Literal["provider", "model"]

PROBE_LEASE_MARGIN_S = 5.0
"""Beyond the attempt's own deadline: time to record its outcome (a store write) in the lease."""


def probe_lease_s(route: ModelRoute) -> float:
    """How long a probe through `route` may hold its lease: the longest its attempt may take —
    `total` for a whole answer, `first_token` for a stream (a stream's probe is over at its
    first content, when the loop records success) — plus `PROBE_LEASE_MARGIN_S`."""
    timeouts = route.timeouts
    return max(timeouts.total, timeouts.first_token) + PROBE_LEASE_MARGIN_S


def provider_key(route: ModelRoute) -> str:
    return provider_breaker(route.provider_name)


def provider_breaker(name: str) -> str:
    """The breaker key of the provider named `name` in the rules file."""
    return f"provider:{name}"


def model_key(route: ModelRoute) -> str:
    return f"model:{route.name}"


class Plan(Protocol):
    """One request's view of the breakers."""

    async def next(self) -> tuple[ModelRoute, bool] | None:
        """The next candidate in order (False: skipped, a breaker is open), or None when done.

        A pull method rather than an async generator: a generator abandoned mid-way (the
        first candidate answered) is closed by the event loop's finalizer hook — a thread-safe
        wake-up and an extra task on every request."""
        ...

    async def success(self, route: ModelRoute) -> None: ...

    async def failure(self, route: ModelRoute, level: Level) -> None: ...

    async def release(self, route: ModelRoute) -> None:
        """The admitted candidate was not tried after all (no key, cannot express the request)."""
        ...

    def retryable(self, route: ModelRoute) -> bool:
        """May `route` be asked again at once after a failed attempt? Not when its attempt was
        a probe (or the last resort): a failed probe has just re-opened its breaker."""
        ...


class Health(Protocol):
    async def plan(self, candidates: tuple[ModelRoute, ...]) -> Plan: ...


class AlwaysHealthy:
    """No breakers: every candidate is tried in order."""

    async def plan(self, candidates: tuple[ModelRoute, ...]) -> Plan:
        return _OpenPlan(candidates)


class _OpenPlan:
    def __init__(self, candidates: tuple[ModelRoute, ...]) -> None:
        self.candidates = candidates
        self.index = 0

    async def next(self) -> tuple[ModelRoute, bool] | None:
        if self.index >= len(self.candidates):
            return None
        self.index += 1
        return self.candidates[self.index - 1], True

    async def success(self, route: ModelRoute) -> None:
        return None

    async def failure(self, route: ModelRoute, level: Level) -> None:
        return None

    async def release(self, route: ModelRoute) -> None:
        return None

    def retryable(self, route: ModelRoute) -> bool:
        return True


class BreakerHealth:
    """Breakers shared through the store; one board per process."""

    def __init__(self, board: BreakerBoard) -> None:
        self.board = board

    async def plan(self, candidates: tuple[ModelRoute, ...]) -> Plan:
        keys = [key for route in candidates for key in (provider_key(route), model_key(route))]
        views = await self.board.snapshot(keys)  # one store round trip at most, usually none
        return BreakerPlan(self.board, candidates, views)

    async def states(self, routes: list[ModelRoute]) -> dict[str, dict[str, str]]:
        """Breaker states of the given routes, for explain and status output."""
        keys = [key for route in routes for key in (provider_key(route), model_key(route))]
        views = await self.board.snapshot(keys)
        return {
            route.name: {
                "provider": views.get(provider_key(route), CLOSED).state,
                "model": views.get(model_key(route), CLOSED).state,
            }
            for route in routes
        }


class BreakerPlan:
    """Candidates in order, each tried when both its breakers admit it; when none was
    admitted (every breaker open), the least recently failed one is tried once more."""

    def __init__(
        self, board: BreakerBoard, candidates: tuple[ModelRoute, ...], views: dict[str, BreakerView]
    ) -> None:
        self.board = board
        self.candidates = candidates
        self.views = views
        self.index = 0
        self.admitted_any = False
        self.last_resort_done = False

    def view(self, key: str) -> BreakerView:
        return self.views.get(key, CLOSED)

    async def next(self) -> tuple[ModelRoute, bool] | None:
        if self.index < len(self.candidates):
            route = self.candidates[self.index]
            self.index += 1
            pkey, mkey = provider_key(route), model_key(route)
            lease_s = probe_lease_s(route)
            admitted = await self.board.admit(pkey, self.view(pkey), lease_s)
            if admitted and not await self.board.admit(mkey, self.view(mkey), lease_s):
                await self.board.release(pkey)  # a provider probe lease we will not use
                admitted = False
            self.admitted_any |= admitted
            return route, admitted
        if self.candidates and not self.admitted_any and not self.last_resort_done:
            self.last_resort_done = True
            by_key = {model_key(r): r for r in self.candidates}
            merged = {
                mkey: _latest(self.view(mkey), self.view(provider_key(route)))
                for mkey, route in by_key.items()
            }
            return by_key[least_recently_failed(list(by_key), merged)], True
        return None

    async def success(self, route: ModelRoute) -> None:
        for key in (provider_key(route), model_key(route)):
            await self.board.record_success(key, self.view(key))

    async def release(self, route: ModelRoute) -> None:
        for key in (provider_key(route), model_key(route)):
            await self.board.release(key)

    def retryable(self, route: ModelRoute) -> bool:
        """Both breakers were closed in this plan's snapshot (the attempt was no probe). A
        failure that has just opened a closed breaker still allows this one retry."""
        return all(self.view(key).state == "closed" for key in (provider_key(route), model_key(route)))

    async def failure(self, route: ModelRoute, level: Level) -> None:
        key = provider_key(route) if level == "provider" else model_key(route)
        await self.board.record_failure(key, self.view(key))
        # A probe through the other breaker failed too: re-open it (a new recovery period)
        # rather than leave its probe lease to expire.
        other = model_key(route) if level == "provider" else provider_key(route)
        if self.view(other).state != "closed":
            await self.board.record_failure(other, self.view(other))


def _latest(a: BreakerView, b: BreakerView) -> BreakerView:
    """Of two views, the one that failed most recently (what least-recently-failed compares)."""
    return a if last_failure(a) >= last_failure(b) else b
