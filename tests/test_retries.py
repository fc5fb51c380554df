"""`retries.retry_delay`: when the candidate loop asks the same model again, and after how long."""

from __future__ import annotations

import random

import pytest
from tier_router.fallback import Attempt, Outcome
from tier_router.retries import retry_delay
from tier_router.routing.engine import ModelRoute
from tier_router.schema import Price, Provider, Retry

PROVIDER = Provider(kind="mock", base_url="mock://p")


def route(name: str, **retry: float) -> ModelRoute:
    return ModelRoute(name, "p", PROVIDER, f"{name}-1", Price(input=1, output=1), None, None, Retry(**retry))


A, B = route("a"), route("b")


def failed(model: ModelRoute, outcome: Outcome, retry_after: float | None = None) -> Attempt:
    return Attempt(model.name, "p", outcome, status=outcome.status, retry_after=retry_after)


def delay(model: ModelRoute, *attempts: Attempt, cap: int = 4) -> float | None:
    return retry_delay(model, list(attempts), cap, random.Random(7))


def test_a_5xx_waits_a_jittered_backoff_between_half_and_one_and_a_half_times_backoff_s() -> None:
    waits = [retry_delay(A, [failed(A, Outcome.http(503))], 4, random.Random(seed)) for seed in range(200)]
    assert all(w is not None and 0.1 <= w <= 0.3 for w in waits)
    assert max(w for w in waits if w) - min(w for w in waits if w) > 0.15  # jittered, not fixed


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(None, None), (0.0, 0.0), (1.5, 1.5), (2.0, 2.0), (2.01, None)]
)
def test_a_429_is_retried_only_when_it_says_when_and_that_is_soon(
    retry_after: float | None, expected: float | None
) -> None:
    assert delay(A, failed(A, Outcome.http(429), retry_after)) == expected


def test_a_503_waits_its_retry_after_when_longer_than_the_backoff_and_moves_on_when_too_long() -> None:
    assert delay(A, failed(A, Outcome.http(503), 1.2)) == 1.2
    assert delay(A, failed(A, Outcome.http(503), 9.0)) is None


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome.TIMEOUT,
        Outcome.CONNECT_ERROR,
        Outcome.CONNECTION_ERROR,
        Outcome.INVALID_RESPONSE,
        Outcome.CONTEXT_LENGTH,
        Outcome.http(504),
        Outcome.http(408),
        Outcome.http(401),
        Outcome.OK,
    ],
)
def test_other_outcomes_are_never_retried(outcome: Outcome) -> None:
    assert delay(A, failed(A, outcome, 0.1)) is None


def test_only_a_models_first_5xx_is_retried_even_when_more_attempts_are_allowed() -> None:
    patient = route("a", max_attempts=3)
    assert (
        delay(patient, failed(patient, Outcome.http(429), 0.5), failed(patient, Outcome.http(500)))
        is not None
    )
    assert delay(patient, failed(patient, Outcome.http(500)), failed(patient, Outcome.http(502))) is None
    assert (
        delay(patient, failed(patient, Outcome.http(429), 0.5), failed(patient, Outcome.http(429), 0.5))
        == 0.5
    )


def test_attempts_per_model_and_per_request_are_capped() -> None:
    assert delay(A, failed(A, Outcome.http(503)), failed(A, Outcome.http(503))) is None  # max_attempts 2
    assert delay(route("a", max_attempts=1), failed(A, Outcome.http(503))) is None
    others = [failed(B, Outcome.http(503)), failed(B, Outcome.http(503)), failed(B, Outcome.TIMEOUT)]
    assert delay(A, *others, failed(A, Outcome.http(503)), cap=4) is None  # the request's 4th attempt
    assert delay(A, *others, failed(A, Outcome.http(503)), cap=5) is not None
    skipped = Attempt("c", "p", Outcome.BREAKER_OPEN)  # not tried: not counted
    assert delay(A, skipped, skipped, skipped, failed(A, Outcome.http(503)), cap=2) is not None


def test_a_retry_is_not_counted_as_a_fallback_in_the_metrics() -> None:
    from tier_router.telemetry import add_emf

    first = failed(A, Outcome.http(429), 1.0)
    again = Attempt("a", "p", Outcome.http(429), status=429, retry=True)
    served = Attempt("b", "p", Outcome.OK)
    retried_then_served = Attempt("a", "p", Outcome.OK, retry=True)
    for attempts, fallbacks in (([first, retried_then_served], 0), ([first, again, served], 1)):
        record = {"status": 200, "attempts": [a.as_dict() for a in attempts]}
        add_emf(record, 0.0)
        assert record["Fallbacks"] == fallbacks
