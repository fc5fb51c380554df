"""Issue 13, items 6-8: what a failure counts against, and how long a probe holds its lease.

Driven through the real candidate loop (`Forwarder`) and real breakers (`BreakerHealth` on a
`BreakerBoard` over a `MemoryStore`), with the providers answered by an `httpx.MockTransport`
and time on a fake clock:

6. The router's own connection pool exhausted (`httpx.PoolTimeout`) is `router_busy`: the
   next candidate serves, no breaker records anything, and a chain of nothing but
   `router_busy` is a 503.
7. A probe's lease lasts at least as long as its attempt may (the provider's `total` timeout):
   a second request during a long probe is not let in as a second probe.
8. One model's timeouts open that model's breaker, not its provider's: a request naming a
   healthy sibling on the same provider is still served by it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from tier_router.breakers import BreakerBoard, BreakerConfig, BreakerHealth, model_key, provider_key
from tier_router.fallback import AllCandidatesFailed, Attempt, all_failed_error
from tier_router.forwarder import Forwarder
from tier_router.provider_keys import KeySource
from tier_router.routing.engine import Decision
from tier_router.routing.loader import parse_rules
from tier_router.routing.request import parse_chat
from tier_router.store.base import Scalar
from tier_router.store.memory import MemoryStore

from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

THRESHOLD = 3
TOTAL_S = 90.0  # the shared provider's timeout for a whole answer: longer than the 30 s lease floor
# As `gateway.breaker_health` builds it: the lease floor is max(recovery_s, 30 s).
CONFIG = BreakerConfig(
    failure_threshold=THRESHOLD, window_s=60, recovery_s=20, probe_lease_s=30, cache_ttl_s=0
)
KEYS = {"SHARED_KEY": "sk-shared-SECRET", "BACKUP_KEY": "sk-backup-SECRET"}
RULES: dict[str, Any] = {
    "version": 1,
    "providers": {
        "shared": {
            "kind": "openai",
            "base_url": "https://shared.test/v1",
            "api_key_env": "SHARED_KEY",
            "timeouts": {"total": TOTAL_S, "first_token": 30.0},
        },
        "backup": {"kind": "openai", "base_url": "https://backup.test/v1", "api_key_env": "BACKUP_KEY"},
    },
    "models": {
        "slow": {"provider": "shared", "id": "slow-1", "price": {"input": 1.0, "output": 1.0}},
        "quick": {"provider": "shared", "id": "quick-1", "price": {"input": 1.0, "output": 1.0}},
        "spare": {"provider": "backup", "id": "spare-1", "price": {"input": 9.0, "output": 9.0}},
    },
    "tiers": {
        "slow-first": ["slow", "spare"],
        "quick-first": ["quick", "spare"],
        "shared-only": ["slow", "quick"],
    },
    "default_tier": "quick-first",
}
ROUTES = parse_rules(RULES, "t.yaml")


class LeaseWatch(MemoryStore):
    """A memory store that keeps every conditional write's expiry (how probe leases are taken)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.leases: list[tuple[str, float | None]] = []

    async def put_if(
        self,
        key: str,
        value: Mapping[str, Scalar],
        *,
        expected: Mapping[str, Scalar | None],
        expires_at: float | None = None,
    ) -> bool:
        won = await super().put_if(key, value, expected=expected, expires_at=expires_at)
        if won and key.endswith("!probe"):
            self.leases.append((key, expires_at))
        return won


def ok(model: str) -> httpx.Response:
    choice = {"index": 0, "message": {"role": "assistant", "content": f"from {model}"}}
    return httpx.Response(200, json={"id": "c", "model": model, "choices": [choice]})


class Upstream:
    """Answers by upstream model id: an exception to raise, or a good answer."""

    def __init__(self, **faults: BaseException) -> None:
        self.faults = faults
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        self.calls.append(model)
        fault = self.faults.get(model.split("-")[0])
        if fault is not None:
            raise fault
        return ok(model)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)  # the start of a failure window


@pytest.fixture
def store(clock: FakeClock) -> LeaseWatch:
    return LeaseWatch(clock)


@pytest.fixture
def board(store: LeaseWatch, clock: FakeClock) -> BreakerBoard:
    return BreakerBoard(store, CONFIG, clock=clock)


def forwarder(upstream: Upstream, board: BreakerBoard) -> Forwarder:
    client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    return Forwarder(client, KeySource(KEYS), BreakerHealth(board))


def decide(tier: str) -> tuple[Decision, dict[str, Any]]:
    body = {"model": tier, "messages": [{"role": "user", "content": "hello"}]}
    return ROUTES.decide(parse_chat(body)), body


async def served_by(fwd: Forwarder, tier: str) -> tuple[str, list[Attempt]]:
    decision, body = decide(tier)
    completion = await fwd.complete(decision, body)
    return completion.route.name, completion.attempts


async def states(board: BreakerBoard, *keys: str) -> dict[str, str]:
    views = await board.snapshot(list(keys))
    return {key: view.state for key, view in views.items()}


# -- 6. the router's own pool exhaustion is nobody's failure -------------------------------------------


async def test_pool_exhaustion_is_router_busy_and_opens_no_breaker(board: BreakerBoard) -> None:
    pool = httpx.PoolTimeout("no connection available in the pool")
    fwd = forwarder(Upstream(slow=pool, quick=pool), board)
    for _ in range(THRESHOLD * 2):
        model, attempts = await served_by(fwd, "slow-first")
        assert model == "spare"  # still moves on to the next candidate
        assert [(a.model, str(a.outcome)) for a in attempts] == [("slow", "router_busy"), ("spare", "ok")]

    keys = (provider_key(ROUTES.routes["slow"]), model_key(ROUTES.routes["slow"]))
    assert await states(board, *keys) == {key: "closed" for key in keys}
    assert (await board.snapshot(list(keys)))[keys[0]].failures == 0  # nothing was even counted

    # The shared provider is healthy: its other model is served as soon as the pool frees up.
    fwd = forwarder(Upstream(), board)
    assert (await served_by(fwd, "quick-first"))[0] == "quick"


async def test_a_chain_of_nothing_but_router_busy_is_a_503(board: BreakerBoard) -> None:
    pool = httpx.PoolTimeout("no connection available in the pool")
    fwd = forwarder(Upstream(slow=pool, quick=pool), board)
    decision, body = decide("shared-only")
    with pytest.raises(AllCandidatesFailed) as info:
        await fwd.complete(decision, body)
    assert [str(a.outcome) for a in info.value.attempts] == ["router_busy", "router_busy"]
    error = all_failed_error(info.value)
    assert (error.status, error.code) == (503, "router_busy")


async def test_router_busy_gives_back_a_probe_lease(board: BreakerBoard, clock: FakeClock) -> None:
    slow = ROUTES.routes["slow"]
    key = model_key(slow)
    for _ in range(THRESHOLD):  # open the slow model's breaker
        await board.record_failure(key, (await board.snapshot([key]))[key])
    clock.advance(CONFIG.recovery_s)
    pool = httpx.PoolTimeout("no connection available in the pool")
    fwd = forwarder(Upstream(slow=pool), board)
    assert (await served_by(fwd, "slow-first"))[0] == "spare"  # the probe never left the router
    # ...so the next request may probe at once, and the breaker is still waiting for one.
    fwd = forwarder(Upstream(), board)
    model, attempts = await served_by(fwd, "slow-first")
    assert (model, [str(a.outcome) for a in attempts]) == ("slow", ["ok"])
    assert await states(board, key) == {key: "closed"}


# -- 7. one probe at a time, however long the provider's timeout ---------------------------------------


async def test_the_probe_lease_outlasts_the_providers_total_timeout(
    board: BreakerBoard, store: LeaseWatch, clock: FakeClock
) -> None:
    quick = ROUTES.routes["quick"]
    key = model_key(quick)
    for _ in range(THRESHOLD):
        await board.record_failure(key, (await board.snapshot([key]))[key])
    clock.advance(CONFIG.recovery_s)

    health = BreakerHealth(board)
    probe = await health.plan((quick,))
    assert await probe.next() == (quick, True)  # the probe goes out...
    [(lease_key, expires_at)] = store.leases
    assert lease_key.endswith(f"{key}!probe")
    assert expires_at is not None
    assert expires_at - clock() >= TOTAL_S

    clock.advance(TOTAL_S - 1)  # ...and is still waiting on its answer, past the old 30 s lease
    second = await health.plan((quick,))
    assert await second.next() == (quick, False), "a second probe while the first is in flight"
    assert len(store.leases) == 1


# -- 8. a slow model opens its own breaker, not its provider's -----------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(httpx.ReadTimeout("slow"), id="read-timeout"),
        pytest.param(TimeoutError(), id="total-deadline"),
    ],
)
async def test_one_models_timeouts_do_not_open_its_provider(board: BreakerBoard, fault: Exception) -> None:
    upstream = Upstream(slow=fault)
    fwd = forwarder(upstream, board)
    for _ in range(THRESHOLD):
        model, attempts = await served_by(fwd, "slow-first")
        assert (model, [str(a.outcome) for a in attempts]) == ("spare", ["timeout", "ok"])

    slow = ROUTES.routes["slow"]
    assert await states(board, model_key(slow), provider_key(slow)) == {
        model_key(slow): "open",
        provider_key(slow): "closed",
    }
    # The slow model is skipped now...
    model, attempts = await served_by(fwd, "slow-first")
    assert (model, [str(a.outcome) for a in attempts]) == ("spare", ["breaker_open", "ok"])
    # ...but a request naming its healthy sibling on the same provider is served by it.
    model, attempts = await served_by(fwd, "quick-first")
    assert (model, [a.model for a in attempts]) == ("quick", ["quick"])


async def test_connect_errors_still_open_the_provider(board: BreakerBoard) -> None:
    fwd = forwarder(Upstream(slow=httpx.ConnectError("connection refused")), board)
    for _ in range(THRESHOLD):
        assert (await served_by(fwd, "slow-first"))[0] == "spare"
    slow = ROUTES.routes["slow"]
    assert await states(board, provider_key(slow)) == {provider_key(slow): "open"}
    model, attempts = await served_by(fwd, "quick-first")  # the endpoint is down: all its models
    assert (model, [str(a.outcome) for a in attempts]) == ("spare", ["breaker_open", "ok"])
