"""The fallback policy, table by table: what each status and failure means for the candidate
loop (move on, or return the client's fault as is) and for the breakers (provider or model),
the outcome names logs and tests rely on, and how an exhausted chain becomes an HTTP error."""

from __future__ import annotations

import copy
import email.utils
import pickle
import time

import httpx
import pytest
from tier_router.errors import APIError, RequestError, RouterError, UpstreamError
from tier_router.fallback import (
    NOT_TRIED,
    UNJUDGED,
    VERDICTS,
    AllCandidatesFailed,
    Attempt,
    Breaker,
    Outcome,
    UpstreamClientError,
    Verdict,
    all_failed_error,
    outcome_of,
    retry_after_seconds,
    verdict,
)
from tier_router.providers.anthropic import TranslationError, UpstreamStreamError
from tier_router.providers.base import ClientRequestError, UpstreamProtocolError

MOVES_ON_MODEL = Verdict(moves_on=True, client_fault=False, breaker=Breaker.MODEL)
MOVES_ON_PROVIDER = Verdict(moves_on=True, client_fault=False, breaker=Breaker.PROVIDER)
CLIENT_FAULT = Verdict(moves_on=False, client_fault=True, breaker=Breaker.SUCCESS)
MOVES_ON_NOTHING = Verdict(moves_on=True, client_fault=False, breaker=Breaker.RELEASE)


# -- statuses ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        # the client's request: returned as is, the provider counts as up
        (400, CLIENT_FAULT),
        (402, CLIENT_FAULT),
        (413, CLIENT_FAULT),
        (415, CLIENT_FAULT),
        (422, CLIENT_FAULT),
        (451, CLIENT_FAULT),
        # overload, conflicts: the next candidate, against the model's breaker
        (408, MOVES_ON_MODEL),
        (409, MOVES_ON_MODEL),
        (425, MOVES_ON_MODEL),
        (429, MOVES_ON_MODEL),
        # the operator's misconfiguration: another provider can still serve
        (401, MOVES_ON_MODEL),
        (403, MOVES_ON_MODEL),
        (404, MOVES_ON_MODEL),
        # outages
        (500, MOVES_ON_MODEL),
        (502, MOVES_ON_MODEL),
        (503, MOVES_ON_MODEL),
        (504, MOVES_ON_MODEL),
        (529, MOVES_ON_MODEL),  # Anthropic's "overloaded"
        # not an answer the router can use: a redirect, an empty or partial success
        (204, MOVES_ON_MODEL),
        (206, MOVES_ON_MODEL),
        (301, MOVES_ON_MODEL),
        (307, MOVES_ON_MODEL),
    ],
)
def test_status_policy(status: int, expected: Verdict) -> None:
    outcome = Outcome.http(status)
    assert outcome == f"http_{status}"
    assert outcome.status == status
    assert verdict(outcome) == expected


# -- failures and skips ------------------------------------------------------------------------------

request = httpx.Request("POST", "https://provider.test/v1/chat/completions")


@pytest.mark.parametrize(
    ("exc", "outcome", "expected"),
    [
        (httpx.ConnectError("refused", request=request), "connect_error", MOVES_ON_PROVIDER),
        (httpx.ConnectTimeout("slow", request=request), "connect_error", MOVES_ON_PROVIDER),
        # the router's own pool, exhausted: the request never left; no breaker records it
        (httpx.PoolTimeout("pool", request=request), "router_busy", MOVES_ON_NOTHING),
        # a slow model: its own breaker, not its provider's
        (httpx.ReadTimeout("slow", request=request), "timeout", MOVES_ON_MODEL),
        (httpx.WriteTimeout("slow", request=request), "timeout", MOVES_ON_MODEL),
        (TimeoutError(), "timeout", MOVES_ON_MODEL),  # a deadline: total / first_token / stall
        (httpx.ReadError("reset", request=request), "connection_error", MOVES_ON_PROVIDER),
        (httpx.RemoteProtocolError("eof", request=request), "connection_error", MOVES_ON_PROVIDER),
        (UpstreamProtocolError("bad JSON"), "invalid_response", MOVES_ON_MODEL),
    ],
)
def test_failure_policy(exc: BaseException, outcome: str, expected: Verdict) -> None:
    assert outcome_of(exc) == outcome
    assert verdict(outcome_of(exc)) == expected


@pytest.mark.parametrize(
    ("outcome", "breaker"),
    [
        (Outcome.BREAKER_OPEN, Breaker.NONE),  # never admitted: nothing to record
        (Outcome.MISSING_KEY, Breaker.RELEASE),  # admitted, not tried: the probe lease goes back
        (Outcome.UNSUPPORTED, Breaker.RELEASE),
        (Outcome.ROUTER_BUSY, Breaker.RELEASE),  # the router's own pool: never reached the provider
    ],
)
def test_skipped_candidates_move_on_and_are_not_tried(outcome: Outcome, breaker: Breaker) -> None:
    assert verdict(outcome) == Verdict(moves_on=True, client_fault=False, breaker=breaker)
    assert not Attempt("m", "p", outcome).tried


def test_ok_serves_and_records_a_success() -> None:
    assert verdict(Outcome.OK) == Verdict(moves_on=False, client_fault=False, breaker=Breaker.SUCCESS)
    assert Attempt("m", "p", Outcome.OK).tried


def test_every_named_outcome_has_a_verdict_and_tried_matches_the_breaker_effect() -> None:
    assert set(VERDICTS) == set(Outcome)
    for outcome in Outcome:
        unrecorded = outcome in NOT_TRIED or outcome in UNJUDGED
        assert unrecorded == (verdict(outcome).breaker in (Breaker.NONE, Breaker.RELEASE))


# -- Outcome as a string -----------------------------------------------------------------------------


def test_outcomes_are_strings_and_http_outcomes_are_members() -> None:
    assert Outcome.TIMEOUT == "timeout"
    assert f"{Outcome.TIMEOUT}" == "timeout"
    assert Outcome("http_503") is Outcome.http(503)
    assert isinstance(Outcome.http(503), Outcome)
    assert Outcome.http(503).status == 503
    assert Outcome.OK.status is None
    assert pickle.loads(pickle.dumps(Outcome.http(429))) is Outcome.http(429)  # noqa: S301
    assert copy.deepcopy(Outcome.http(429)) is Outcome.http(429)
    assert "http_503" not in [member.value for member in Outcome]  # iteration: the named ones


@pytest.mark.parametrize("value", ["http_", "http_5", "http_50x", "http_5030", "nope"])
def test_only_real_outcome_names_are_outcomes(value: str) -> None:
    with pytest.raises(ValueError, match="is not a valid Outcome"):
        Outcome(value)


def test_attempt_as_dict_has_plain_strings() -> None:
    data = Attempt("claude", "anthropic", Outcome.http(529), "overloaded", 529, 2.5, 12.0).as_dict()
    assert data == {
        "model": "claude",
        "provider": "anthropic",
        "outcome": "http_529",
        "ms": 12.0,
        "detail": "overloaded",
        "retry_after": 2.5,
    }
    assert type(data["outcome"]) is str
    assert Attempt("m", "p", Outcome.BREAKER_OPEN).as_dict()["tried"] is False


# -- an exhausted chain ------------------------------------------------------------------------------


def attempt(outcome: str, status: int | None = None, retry_after: float | None = None) -> Attempt:
    return Attempt("m", "p", Outcome(outcome), "why", status=status, retry_after=retry_after)


@pytest.mark.parametrize(
    ("attempts", "status", "code", "type_", "headers"),
    [
        ([attempt("http_503", 503), attempt("connect_error")], 502, "upstream_error", "upstream_error", {}),
        ([attempt("timeout"), attempt("timeout")], 504, "upstream_timeout", "upstream_error", {}),
        ([attempt("router_busy"), attempt("router_busy")], 503, "router_busy", "upstream_error", {}),
        ([attempt("router_busy"), attempt("timeout")], 504, "upstream_timeout", "upstream_error", {}),
        ([attempt("breaker_open"), attempt("router_busy")], 503, "router_busy", "upstream_error", {}),
        (
            [attempt("http_429", 429, 7.4), attempt("http_429", 429, 2.6), attempt("breaker_open")],
            429,
            "upstream_rate_limited",
            "rate_limit_error",
            {"retry-after": "3"},
        ),
        (
            [attempt("http_429", 429, 0.1)],
            429,
            "upstream_rate_limited",
            "rate_limit_error",
            {"retry-after": "1"},
        ),
        ([attempt("http_429", 429)], 429, "upstream_rate_limited", "rate_limit_error", {}),
        (
            [attempt("breaker_open"), attempt("missing_key")],
            503,
            "no_available_provider",
            "upstream_error",
            {},
        ),
        (
            [attempt("unsupported", 400), attempt("breaker_open")],
            400,
            "unsupported_request",
            "invalid_request_error",
            None,
        ),
        (
            [attempt("unsupported", 400), attempt("http_500", 500)],
            502,
            "upstream_error",
            "upstream_error",
            {},
        ),
    ],
)
def test_all_failed_error(attempts, status, code, type_, headers) -> None:
    error = all_failed_error(AllCandidatesFailed(attempts))
    assert isinstance(error, APIError)
    assert (error.status, error.code, error.type) == (status, code, type_)
    if headers is None:
        assert error.headers == {}
    else:
        assert error.headers == {"x-router-attempts": str(sum(a.tried for a in attempts)), **headers}
    assert "m (p)" in error.message


def test_retry_after_in_ms_seconds_or_a_date() -> None:
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "1500"})) == 1.5
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "soon", "retry-after": "4"})) == 4.0
    assert retry_after_seconds(httpx.Headers({"retry-after": "-3"})) == 0.0
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after_seconds(httpx.Headers({"retry-after": date})) <= 30  # type: ignore[operator]
    assert retry_after_seconds(httpx.Headers({"retry-after": "not a date"})) is None
    assert retry_after_seconds(httpx.Headers()) is None


# -- the exception tree ------------------------------------------------------------------------------


def test_forwarding_errors_fit_the_tree() -> None:
    assert issubclass(AllCandidatesFailed, UpstreamError)
    assert issubclass(UpstreamClientError, UpstreamError)
    assert issubclass(UpstreamProtocolError, UpstreamError)
    assert issubclass(UpstreamProtocolError, ValueError)
    assert issubclass(ClientRequestError, RequestError)
    assert issubclass(ClientRequestError, ValueError)
    assert issubclass(TranslationError, RouterError)
    assert issubclass(TranslationError, ValueError)  # callers catch it as one
    assert issubclass(UpstreamStreamError, UpstreamError)
