"""Breakers under injected faults: the router (create_app under uvicorn, in a thread) in front of
fake upstreams, tier `fast` = [a, b] (and `mixed` = [c (Anthropic), b]), driven by the OpenAI SDK
(no SDK retries).

Breakers: 3 failures within 30 s open one, recovery 1 s, cache 0 (every request reads the
store). The behaviour tests run on `memory://` and on `sqlite:///<tmp>/state.db`; the probe-lease
regression tests at the end run on memory only (what they check sits above the store).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.loopback import free_port

pytestmark = pytest.mark.integration

THRESHOLD = 3
RECOVERY_S = 1.0
RECOVERED_S = RECOVERY_S + 0.2  # a little past recovery, so the next request may probe
REPROBE_S = 2 * RECOVERY_S + 0.2  # after a failed probe: the period doubled (recovery_backoff 2)
WINDOW_S = 30.0


def user(text: str = "What is the capital of France?") -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def router(start_router, make_rules, store_url, avoid_window_edge):
    avoid_window_edge(WINDOW_S)
    return start_router(make_rules(), store_url)


def chat(client: openai.OpenAI, text: str = "What is the capital of France?") -> Any:
    """One non-streamed request on tier `fast`; the raw response (for its headers)."""
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=user(text))
    raw.parse()  # a valid completion, or the SDK raises
    return raw


def served(raw: Any) -> tuple[str, int]:
    return raw.headers["x-router-model"], int(raw.headers["x-router-attempts"])


def burst(router: Any, n: int) -> list[Any]:
    """`n` requests at once (async SDK, n connections); every raw response, in order."""

    async def run() -> list[Any]:
        async with router.async_sdk() as client:
            return list(
                await asyncio.gather(
                    *(
                        client.chat.completions.with_raw_response.create(
                            model="fast", messages=user(f"burst {i}")
                        )
                        for i in range(n)
                    )
                )
            )

    return asyncio.run(run())


def open_model_breaker(router: Any, fakes: Any, client: openai.OpenAI) -> None:
    """A answers 503: THRESHOLD requests (each served by B after A failed) open model `a`."""
    fakes.a.control(mode="status", status=503)
    for i in range(THRESHOLD):
        assert router.breaker("a")["model"] == "closed", f"opened after only {i} failures"
        assert served(chat(client)) == ("b", 2)
    assert router.breaker("a") == {"provider": "closed", "model": "open"}
    assert fakes.a.requests == THRESHOLD


# ------------------------------------------------------------------- A down: B serves, A skipped


def test_failing_a_opens_its_model_breaker_and_is_then_skipped(router, fakes) -> None:
    with router.sdk() as client:
        open_model_breaker(router, fakes, client)

        for _ in range(10):
            assert served(chat(client)) == ("b", 1)

    assert fakes.a.requests == THRESHOLD  # nothing reached A once its breaker was open
    assert fakes.b.requests == THRESHOLD + 10


def test_after_recovery_exactly_one_probe_then_a_healthy_probe_closes_the_breaker(router, fakes) -> None:
    with router.sdk() as client:
        open_model_breaker(router, fakes, client)
        # A stays down and slow, so the probe is still in flight while the rest of the burst arrives.
        fakes.a.control(mode="status", status=503, latency_ms=200)
        time.sleep(RECOVERED_S)
        assert router.breaker("a")["model"] == "half_open"

        results = [served(raw) for raw in burst(router, 8)]  # all 8 succeed (or gather raises)

        assert fakes.a.requests == THRESHOLD + 1, "exactly one probe goes to A"
        assert sorted(results) == [("b", 1)] * 7 + [("b", 2)]
        assert router.breaker("a")["model"] == "open"  # the probe failed: a new recovery period
        for _ in range(3):
            assert served(chat(client)) == ("b", 1)
        assert fakes.a.requests == THRESHOLD + 1

        fakes.a.control(mode="ok")
        time.sleep(REPROBE_S)
        assert served(chat(client)) == ("a", 1)  # the probe, answered by A
        assert router.breaker("a") == {"provider": "closed", "model": "closed"}
        for _ in range(5):
            assert served(chat(client)) == ("a", 1)

    assert fakes.a.requests == THRESHOLD + 1 + 1 + 5


def test_concurrent_burst_during_a_healthy_probe_sends_one_request_to_a(router, fakes) -> None:
    with router.sdk() as client:
        open_model_breaker(router, fakes, client)
    fakes.a.control(mode="ok", latency_ms=200)  # recovered, but the probe takes a while
    time.sleep(RECOVERED_S)

    results = [served(raw) for raw in burst(router, 8)]

    assert sorted(results) == [("a", 1)] + [("b", 1)] * 7
    assert fakes.a.requests == THRESHOLD + 1
    assert router.breaker("a") == {"provider": "closed", "model": "closed"}


# ------------------------------------------------------------- transport failures: provider breaker


def test_connection_refused_opens_the_provider_breaker(
    start_router, make_rules, store_url, fakes, avoid_window_edge
) -> None:
    avoid_window_edge(WINDOW_S)
    router = start_router(make_rules(a_url=f"http://127.0.0.1:{free_port()}"), store_url)
    with router.sdk() as client:
        for _ in range(THRESHOLD):
            assert served(chat(client)) == ("b", 2)  # A refused the connection, B answered
        assert router.breaker("a") == {"provider": "open", "model": "closed"}

        started = time.monotonic()
        for _ in range(5):
            assert served(chat(client)) == ("b", 1)
        assert time.monotonic() - started < 5.0
    assert fakes.b.requests == THRESHOLD + 5


def test_timeouts_open_the_model_breaker(
    start_router, make_rules, store_url, fakes, avoid_window_edge
) -> None:
    """A slow model counts against its own breaker, not its provider's (issue 13, item 8)."""
    small = {"connect": 0.5, "read": 0.3, "total": 0.3, "first_token": 0.3, "stall": 0.3}
    avoid_window_edge(WINDOW_S)
    router = start_router(make_rules(timeouts_a=small), store_url)
    fakes.a.control(mode="timeout", delay_s=10)
    with router.sdk() as client:
        for _ in range(THRESHOLD):
            started = time.monotonic()
            assert served(chat(client)) == ("b", 2)
            assert 0.25 <= time.monotonic() - started < 3.0  # A's 0.3 s budget, then B
        assert router.breaker("a") == {"provider": "closed", "model": "open"}

        for _ in range(5):
            started = time.monotonic()
            assert served(chat(client)) == ("b", 1)
            assert time.monotonic() - started < 0.25  # A is not even waited on
    assert fakes.a.requests == THRESHOLD


# ------------------------------------------------------------------ partial failure: no client errors


def test_thirty_percent_failures_on_a_are_invisible_to_clients(router, fakes) -> None:
    fakes.a.control(mode="status", status=503, failure_rate=0.3, seed=7)
    results: list[tuple[str, int]] = []

    async def run() -> None:
        async with router.async_sdk() as client:
            queue = list(range(60))

            async def worker() -> None:
                while queue:
                    i = queue.pop()
                    raw = await client.chat.completions.with_raw_response.create(
                        model="fast", messages=user(f"request {i}")
                    )
                    raw.parse()
                    results.append(served(raw))

            await asyncio.gather(*(worker() for _ in range(4)))

    asyncio.run(run())  # any client-visible error raises here

    assert len(results) == 60
    outcomes = fakes.a.stats()["outcomes"]
    assert outcomes.get("status", 0) >= 1, "the seeded fault never fired: the test proves nothing"
    # Every request A answered was served by A first time; every one A failed, by B second.
    assert results.count(("a", 1)) == outcomes.get("ok", 0)
    assert results.count(("b", 2)) == outcomes["status"]
    assert results.count(("a", 1)) + results.count(("b", 2)) + results.count(("b", 1)) == 60
    assert fakes.b.requests == 60 - outcomes.get("ok", 0)


# ------------------------------------------------------------------------- a probe's lease is freed


@pytest.mark.parametrize(
    "probe_fault",
    [
        pytest.param({"mode": "reset"}, id="connection-reset"),
        pytest.param({"mode": "timeout", "delay_s": 10}, id="timeout"),
    ],
)
def test_a_probe_that_fails_at_the_transport_level_starts_a_new_recovery_period(
    start_router, make_rules, fakes, avoid_window_edge, probe_fault
) -> None:
    """Model `a` is open (HTTP 503s). Its probe then fails at the transport level: a reset,
    which the forwarder records against the PROVIDER breaker, or a timeout, which it records
    against the model's (a slow model). Either way the model breaker must still see its probe
    end — re-opened for a new recovery period (or at least its lease freed) — so that after a
    recovery period the next probe goes to A. (The failure mode: the model's probe lease is
    never released and A is skipped until it expires, 30 s.)"""
    small = {"connect": 0.5, "read": 0.3, "total": 0.3, "first_token": 0.3, "stall": 0.3}
    avoid_window_edge(WINDOW_S)
    router = start_router(make_rules(timeouts_a=small), "memory://")  # the bug is above the store
    with router.sdk() as client:
        open_model_breaker(router, fakes, client)
        fakes.a.control(**probe_fault)
        time.sleep(RECOVERED_S)
        assert served(chat(client)) == ("b", 2)  # the probe: A failed, B answered
        assert fakes.a.requests == THRESHOLD + 1

        fakes.a.control(mode="ok")
        time.sleep(REPROBE_S)
        assert served(chat(client)) == ("a", 1), "A is healthy and a recovery period has passed"
        assert router.breaker("a") == {"provider": "closed", "model": "closed"}


def test_a_probe_answered_with_a_client_error_frees_the_probe_slot(
    start_router, make_rules, fakes, avoid_window_edge
) -> None:
    """The probe reaches A, which rejects the request as the client's fault (400, passed back to
    the client as is). A answered, so the probe is over: after a recovery period at the latest
    the next request must be able to probe (or the breaker is closed). (The failure mode: a 4xx
    records neither success nor failure, so the probe lease stays taken until it expires, 30 s,
    and A is skipped all that time.)"""
    avoid_window_edge(WINDOW_S)
    router = start_router(make_rules(), "memory://")  # the bug is above the store
    with router.sdk() as client:
        open_model_breaker(router, fakes, client)
        fakes.a.control(mode="status", status=400)
        time.sleep(RECOVERED_S)
        with pytest.raises(openai.BadRequestError):
            chat(client)
        assert fakes.a.requests == THRESHOLD + 1

        fakes.a.control(mode="ok")
        time.sleep(RECOVERED_S)
        assert served(chat(client)) == ("a", 1), "A is healthy and a recovery period has passed"
        assert router.breaker("a") == {"provider": "closed", "model": "closed"}


def test_a_probe_slot_taken_by_a_request_the_provider_cannot_serve_is_freed(
    start_router, make_rules, fakes, avoid_window_edge
) -> None:
    """Tier `mixed` = [c (Anthropic), b]. C's model breaker is open; C recovers. The first request
    after the recovery period asks for `logprobs`, which the Anthropic provider cannot express:
    C is admitted as the probe, then skipped as `unsupported` without being called. No probe
    happened, so the next ordinary request must be able to probe C. (The failure mode: the probe
    lease taken for the skipped candidate is never released, so C is skipped until it expires,
    30 s. A candidate skipped for a missing key after admission leaks the lease the same way.)"""
    avoid_window_edge(WINDOW_S)
    router = start_router(make_rules(), "memory://")  # the bug is above the store
    fakes.anthropic.control(mode="status", status=529)
    with router.sdk() as client:
        for _ in range(THRESHOLD):
            raw = client.chat.completions.with_raw_response.create(model="mixed", messages=user())
            assert served(raw) == ("b", 2)
        assert router.breaker("c") == {"provider": "closed", "model": "open"}

        fakes.anthropic.control(mode="ok")
        time.sleep(RECOVERED_S)
        raw = client.chat.completions.with_raw_response.create(model="mixed", messages=user(), logprobs=True)
        assert served(raw) == ("b", 1)  # C was not tried: it cannot serve logprobs
        assert fakes.anthropic.requests == THRESHOLD

        raw = client.chat.completions.with_raw_response.create(model="mixed", messages=user())
        assert served(raw) == ("c", 1), "C is healthy, recovered, and nobody has probed it"
        assert router.breaker("c") == {"provider": "closed", "model": "closed"}
