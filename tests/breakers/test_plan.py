"""Which candidates a request tries, on the path the forwarder uses: `BreakerHealth.plan`,
then `Plan.next` until None, reporting each attempt with success / failure / release."""

from __future__ import annotations

import pytest
from tier_router.breakers import (
    CLOSED,
    AlwaysHealthy,
    BreakerBoard,
    BreakerHealth,
    Plan,
    model_key,
    provider_key,
)
from tier_router.routing.engine import ModelRoute
from tier_router.schema import Price, Provider

from tests.breakers.support import CONFIG, fail, open_breaker, view_of
from tests.support.clock import FakeClock
from tests.support.stores import Counting

pytestmark = pytest.mark.anyio

PROVIDERS = {name: Provider(kind="mock", base_url=f"mock://{name}") for name in ("pa", "pb", "pc")}


def route(name: str, provider: str) -> ModelRoute:
    return ModelRoute(name, provider, PROVIDERS[provider], f"{name}-1", Price(input=1, output=1), None, None)


A, B, C = route("a", "pa"), route("b", "pb"), route("c", "pc")
A2 = route("a2", "pa")  # a second model on A's provider


async def walk(plan: Plan) -> list[tuple[str, bool]]:
    """Every step of a plan whose attempts all fail at the model level."""
    steps = []
    while (step := await plan.next()) is not None:
        candidate, admitted = step
        steps.append((candidate.name, admitted))
        if admitted:
            await plan.failure(candidate, "model")
    return steps


async def test_candidates_keep_their_order_and_open_ones_are_skipped(
    board: BreakerBoard, clock: FakeClock
) -> None:
    await open_breaker(board, model_key(B), clock)
    plan = await BreakerHealth(board).plan((A, B, C))
    assert await plan.next() == (A, True)
    assert await plan.next() == (B, False)
    assert await plan.next() == (C, True)
    assert await plan.next() is None


async def test_an_open_provider_skips_all_its_models(board: BreakerBoard, clock: FakeClock) -> None:
    await open_breaker(board, provider_key(A), clock)
    plan = await BreakerHealth(board).plan((A, A2, B))
    assert [await plan.next() for _ in range(4)] == [(A, False), (A2, False), (B, True), None]


async def test_every_breaker_open_tries_the_least_recently_failed_once(
    store: Counting, board: BreakerBoard, clock: FakeClock
) -> None:
    await open_breaker(board, model_key(A), clock)
    clock.advance(5)
    await open_breaker(board, model_key(B), clock)
    clock.advance(5)
    await open_breaker(board, model_key(C), clock)
    clock.advance(CONFIG.cache_ttl_s)
    health = BreakerHealth(board)

    # Every candidate is skipped, then the one that failed longest ago is tried: once.
    plan = await health.plan((C, B, A))
    assert await walk(plan) == [("c", False), ("b", False), ("a", False), ("a", True)]
    assert await plan.next() is None

    # That attempt failed: `a` re-opened (a new recovery period), so `b` is the last resort now.
    view = await view_of(board, model_key(A), clock)
    assert (view.state, view.last_failure_at) == ("open", clock.now - CONFIG.cache_ttl_s)
    assert await walk(await health.plan((C, B, A))) == [("c", False), ("b", False), ("a", False), ("b", True)]


async def test_a_successful_last_resort_closes_its_breakers(board: BreakerBoard, clock: FakeClock) -> None:
    await open_breaker(board, model_key(A), clock)
    await open_breaker(board, provider_key(B), clock)
    health = BreakerHealth(board)
    plan = await health.plan((A, B))
    assert [await plan.next() for _ in range(3)] == [(A, False), (B, False), (A, True)]
    await plan.success(A)
    assert await plan.next() is None
    assert await health.states([A, B]) == {
        "a": {"provider": "closed", "model": "closed"},
        "b": {"provider": "open", "model": "closed"},
    }


async def test_the_last_resort_weighs_provider_and_model_failures(
    board: BreakerBoard, clock: FakeClock
) -> None:
    """A's model breaker opened first, but its provider failed last: B is the better bet."""
    await open_breaker(board, model_key(A), clock)
    clock.advance(5)
    await open_breaker(board, model_key(B), clock)
    clock.advance(5)
    await open_breaker(board, provider_key(A), clock)
    plan = await BreakerHealth(board).plan((A, B))
    assert [await plan.next() for _ in range(4)] == [(A, False), (B, False), (B, True), None]


async def test_no_last_resort_once_a_candidate_was_admitted(board: BreakerBoard, clock: FakeClock) -> None:
    await open_breaker(board, model_key(A), clock)
    plan = await BreakerHealth(board).plan((A, B))
    assert await walk(plan) == [("a", False), ("b", True)]  # b failed, and a stays skipped


async def test_a_probe_lease_is_taken_only_when_the_plan_gets_there(
    store: Counting, board: BreakerBoard, clock: FakeClock
) -> None:
    await open_breaker(board, model_key(B), clock)
    clock.advance(CONFIG.recovery_s)
    plan = await BreakerHealth(board).plan((A, B))
    before = store.calls.get("put_if", 0)
    assert await plan.next() == (A, True)
    await plan.success(A)  # A answered: B's half-open breaker is never asked for a lease
    assert store.calls.get("put_if", 0) == before


async def test_after_recovery_one_plan_probes_and_the_others_skip(
    board: BreakerBoard, clock: FakeClock
) -> None:
    await open_breaker(board, model_key(A), clock)
    clock.advance(CONFIG.recovery_s)
    health = BreakerHealth(board)
    prober, other = await health.plan((A, B)), await health.plan((A, B))
    assert await prober.next() == (A, True)  # the probe
    assert await other.next() == (A, False)  # the lease is taken
    await prober.success(A)
    assert (await view_of(board, model_key(A), clock)) == CLOSED


async def test_a_provider_lease_is_given_back_when_the_model_is_still_open(
    board: BreakerBoard, clock: FakeClock
) -> None:
    await open_breaker(board, provider_key(A), clock)
    clock.advance(CONFIG.recovery_s)
    await open_breaker(board, model_key(A), clock)  # the model opened later: still recovering
    plan = await BreakerHealth(board).plan((A, B))
    assert await plan.next() == (A, False)
    view = (await board.snapshot([provider_key(A)]))[provider_key(A)]
    assert view.state == "half_open"
    assert await board.admit(provider_key(A), view) is True  # the provider's probe slot is free


async def test_release_gives_an_unused_probe_back(board: BreakerBoard, clock: FakeClock) -> None:
    await open_breaker(board, model_key(A), clock)
    clock.advance(CONFIG.recovery_s)
    health = BreakerHealth(board)
    plan = await health.plan((A,))
    assert await plan.next() == (A, True)
    await plan.release(A)  # e.g. no provider key: the request never went out
    assert await (await health.plan((A,))).next() == (A, True)


async def test_failures_count_against_the_level_that_failed(board: BreakerBoard, clock: FakeClock) -> None:
    health = BreakerHealth(board)
    for _ in range(CONFIG.failure_threshold):
        plan = await health.plan((A, A2))
        candidate, admitted = await plan.next()  # type: ignore[misc]
        assert admitted
        await plan.failure(candidate, "provider")  # e.g. connection refused
    clock.advance(CONFIG.cache_ttl_s)
    assert await health.states([A, A2]) == {
        "a": {"provider": "open", "model": "closed"},
        "a2": {"provider": "open", "model": "closed"},
    }
    await fail(board, model_key(B), CONFIG.failure_threshold)  # e.g. 429s from one model
    clock.advance(CONFIG.cache_ttl_s)
    assert (await health.states([B]))["b"] == {"provider": "closed", "model": "open"}


async def test_a_failed_probe_reopens_both_half_open_breakers(board: BreakerBoard, clock: FakeClock) -> None:
    await open_breaker(board, provider_key(A), clock)
    await open_breaker(board, model_key(A), clock)
    clock.advance(CONFIG.recovery_s)
    plan = await BreakerHealth(board).plan((A,))
    assert await plan.next() == (A, True)
    failed_at = clock.now
    await plan.failure(A, "model")
    for key in (provider_key(A), model_key(A)):
        view = await view_of(board, key, clock)
        assert (view.state, view.opened_at) == ("open", failed_at)


async def test_always_healthy_tries_everything_in_order() -> None:
    plan = await AlwaysHealthy().plan((A, B))
    assert await walk(plan) == [("a", True), ("b", True)]
    await plan.success(A)
    await plan.release(A)


async def test_only_a_candidate_whose_breakers_were_closed_may_be_retried_at_once(
    board: BreakerBoard, clock: FakeClock
) -> None:
    """A retry (`retries.retry_delay`) asks the plan first: an attempt that was a probe (its
    breaker half-open) or the last resort (every breaker open) is never repeated — a failed
    probe has just re-opened its breaker."""
    await open_breaker(board, model_key(A), clock)
    clock.advance(CONFIG.recovery_s + CONFIG.cache_ttl_s)  # A's breaker is half-open: one probe
    plan = await BreakerHealth(board).plan((A, B))
    assert await plan.next() == (A, True)  # the probe
    assert not plan.retryable(A)
    assert await plan.next() == (B, True)
    assert plan.retryable(B)
    assert (await AlwaysHealthy().plan((A,))).retryable(A)
