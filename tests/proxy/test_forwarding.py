"""Non-streamed forwarding through the app: pass-through of the OpenAI body, routing headers,
and every fallback rule of `tier_router.fallback` (what moves on, what is returned as is), plus
the all-candidates-failed status mapping and key redaction."""

from __future__ import annotations

import email.utils
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}


def error_body(message: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": None}}


# -- pass-through ---------------------------------------------------------------------------


async def test_body_passes_through_with_only_model_replaced(router, upstream, urls, chat, completion, keys):
    body = chat(
        "Say hi",
        seed=7,
        logit_bias={"50256": -100},
        foo_custom={"x": 1},
        temperature=0.3,
        metadata={"team": "search"},
    )
    route = upstream.post(urls["openai"]).mock(return_value=httpx.Response(200, json=completion()))

    response = await router.post("/v1/chat/completions", json=body)

    assert response.status_code == 200
    assert route.call_count == 1
    sent = route.calls.last.request
    assert json.loads(sent.content) == {**body, "model": "gpt-a-2025"}
    assert sent.headers["authorization"] == f"Bearer {keys['OPENAI_KEY']}"
    assert sent.headers["content-type"] == "application/json"


async def test_client_gets_upstream_body_verbatim_with_provider_model(
    router, upstream, urls, chat, completion
):
    upstream_body = completion(model="gpt-a-2025-06-01", provider_extra={"kept": True})
    raw = json.dumps(upstream_body, indent=3).encode()  # unusual formatting: proves no re-encoding
    upstream.post(urls["openai"]).mock(return_value=httpx.Response(200, content=raw, headers=JSON))

    response = await router.post("/v1/chat/completions", json=chat(model="auto"))

    assert response.status_code == 200
    assert response.content == raw
    assert response.json()["model"] == "gpt-a-2025-06-01"
    assert response.json()["model"] != "auto"
    assert response.headers["content-type"].startswith("application/json")


async def test_routing_and_upstream_headers(router, upstream, urls, chat, completion):
    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(
            200,
            json=completion(),
            headers={
                "x-request-id": "req-upstream-42",
                "x-ratelimit-remaining-requests": "99",
                "x-ratelimit-limit-tokens": "150000",
                "set-cookie": "provider=session",
            },
        )
    )

    response = await router.post("/v1/chat/completions", json=chat())

    h = response.headers
    assert h["x-router-tier"] == "fast"
    assert h["x-router-rule"] == "default"
    assert h["x-router-model"] == "primary"
    assert h["x-router-provider"] == "openai-a"
    assert h["x-router-attempts"] == "1"
    assert h["x-request-id"] == "req-upstream-42"
    assert h["x-ratelimit-remaining-requests"] == "99"
    assert h["x-ratelimit-limit-tokens"] == "150000"
    assert "set-cookie" not in h


async def test_rule_match_and_alias_are_reported(router, upstream, urls, chat, completion):
    upstream.post(urls["openai"]).mock(return_value=httpx.Response(200, json=completion()))

    response = await router.post("/v1/chat/completions", json=chat(model="gpt-4o"))

    assert response.status_code == 200
    assert response.headers["x-router-tier"] == "fast"
    assert response.headers["x-router-rule"] == "explicit"


async def test_explicit_model_goes_to_that_model_first(router, upstream, urls, chat, completion):
    primary = upstream.post(urls["openai"]).mock(return_value=httpx.Response(200, json=completion()))
    backup = upstream.post(urls["backup"]).mock(
        return_value=httpx.Response(200, json=completion(model="gpt-b-mini-0001"))
    )

    response = await router.post("/v1/chat/completions", json=chat(model="secondary"))

    assert response.status_code == 200
    assert backup.call_count == 1
    assert primary.call_count == 0
    assert json.loads(backup.calls.last.request.content)["model"] == "gpt-b-mini"
    assert response.headers["x-router-model"] == "secondary"
    assert response.headers["x-router-provider"] == "openai-b"


async def test_legacy_path_without_v1_works(router, upstream, urls, chat, completion):
    upstream.post(urls["openai"]).mock(return_value=httpx.Response(200, json=completion()))
    response = await router.post("/chat/completions", json=chat())
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello there"


# -- fallback -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 409, 425, 401, 403, 404])
async def test_retryable_or_operator_status_falls_back(status, router, upstream, urls, chat, completion):
    primary = upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(status, json=error_body(f"primary says {status}"))
    )
    backup = upstream.post(urls["backup"]).mock(
        return_value=httpx.Response(200, json=completion("from backup", model="gpt-b-mini-0001"))
    )

    response = await router.post("/v1/chat/completions", json=chat())

    retried = status in (500, 502, 503)  # a first 500/502/503 is retried once on the same model
    assert response.status_code == 200
    assert primary.call_count == (2 if retried else 1)
    assert backup.call_count == 1
    assert response.json()["choices"][0]["message"]["content"] == "from backup"
    assert response.json()["model"] == "gpt-b-mini-0001"
    assert response.headers["x-router-model"] == "secondary"
    assert response.headers["x-router-provider"] == "openai-b"
    assert response.headers["x-router-attempts"] == ("3" if retried else "2")


async def test_429_with_long_retry_after_moves_on_immediately(router, upstream, urls, chat, completion):
    primary = upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(
            429, json=error_body("Rate limit reached", "rate_limit_error"), headers={"retry-after": "120"}
        )
    )
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(200, json=completion()))

    started = time.perf_counter()
    response = await router.post("/v1/chat/completions", json=chat())
    elapsed = time.perf_counter() - started

    assert response.status_code == 200
    assert elapsed < 5
    assert [str(call.request.url) for call in upstream.calls] == [urls["openai"], urls["backup"]]
    assert primary.call_count == 1  # not retried after its retry-after either
    assert backup.call_count == 1
    assert response.headers["x-router-attempts"] == "2"
    assert "retry-after" not in response.headers


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.ConnectError("connection refused"), id="connect_error"),
        pytest.param(httpx.ConnectTimeout("connect timed out"), id="connect_timeout"),
        pytest.param(httpx.ReadTimeout("read timed out"), id="read_timeout"),
        pytest.param(httpx.RemoteProtocolError("peer closed connection"), id="dropped"),
        pytest.param(httpx.Response(200, content=b"<html>oops</html>", headers=JSON), id="invalid_json"),
        pytest.param(httpx.Response(200, json={"object": "chat.completion", "id": "x"}), id="no_choices"),
        pytest.param(httpx.Response(200, json={"object": "x", "choices": "nope"}), id="choices_not_list"),
        pytest.param(httpx.Response(200, json=[1, 2, 3]), id="json_array"),
        pytest.param(httpx.Response(200, content=b"", headers=JSON), id="empty_body"),
    ],
)
async def test_provider_failure_falls_back(failure, router, upstream, urls, chat, completion):
    primary = upstream.post(urls["openai"])
    if isinstance(failure, httpx.Response):
        primary.mock(return_value=failure)
    else:
        primary.mock(side_effect=failure)
    backup = upstream.post(urls["backup"]).mock(
        return_value=httpx.Response(200, json=completion("served by backup"))
    )

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "served by backup"
    assert primary.call_count == 1
    assert backup.call_count == 1
    assert response.headers["x-router-attempts"] == "2"
    assert response.headers["x-router-model"] == "secondary"


async def test_total_timeout_moves_on(make_router, upstream, urls, chat, completion, sleepy):
    router = make_router(timeouts={"total": 0.2})
    slow = sleepy(3.0, httpx.Response(200, json=completion("too late")))
    upstream.post(urls["openai"]).mock(side_effect=slow)
    upstream.post(urls["backup"]).mock(return_value=httpx.Response(200, json=completion("in time")))

    started = time.perf_counter()
    response = await router.post("/v1/chat/completions", json=chat())
    elapsed = time.perf_counter() - started

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "in time"
    assert len(slow.started) == 1
    assert elapsed < 2.0
    assert response.headers["x-router-attempts"] == "2"


@pytest.mark.parametrize("status", [301, 302, 307, 201, 204])
async def test_redirect_or_unexpected_success_status_falls_back(
    status, router, upstream, urls, chat, completion
):
    """Only 4xx is the client's fault. A 3xx (a wrong base_url, a proxy redirecting to a login
    page) or a 2xx other than 200 is the provider's / operator's problem: the next candidate
    serves, and the client never receives a redirect or a 204 carrying an error body."""
    headers = {"location": "https://login.openai.test/"} if 300 <= status < 400 else {}
    primary = upstream.post(urls["openai"]).mock(return_value=httpx.Response(status, headers=headers))
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(200, json=completion("backup")))

    response = await router.post("/v1/chat/completions", json=chat())

    assert primary.call_count == 1
    assert response.status_code == 200, response.text
    assert backup.call_count == 1
    assert response.json()["choices"][0]["message"]["content"] == "backup"
    assert response.headers["x-router-attempts"] == "2"


@pytest.mark.parametrize("status", [400, 422])
async def test_client_error_is_returned_not_retried(status, router, upstream, urls, chat):
    # A value the router forwards unchecked (enumerations differ between providers) and this
    # provider refuses; a wrong type or range is refused by the router itself (tier_router.params).
    message = "Invalid value: 'maximal'. Supported values are: 'low', 'medium', and 'high'."
    primary = upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(status, json=error_body(message))
    )
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(500))

    response = await router.post("/v1/chat/completions", json=chat(reasoning_effort="maximal"))

    assert response.status_code == status
    assert primary.call_count == 1
    assert backup.call_count == 0
    error = response.json()["error"]
    assert error["message"] == message
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "upstream_rejected_request"
    assert set(error) == {"message", "type", "param", "code"}
    assert response.headers["x-router-model"] == "primary"
    assert response.headers["x-router-attempts"] == "1"


async def test_client_error_without_json_body_reports_status(router, upstream, urls, chat):
    upstream.post(urls["openai"]).mock(return_value=httpx.Response(400, content=b"bad request"))
    response = await router.post("/v1/chat/completions", json=chat())
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "HTTP 400"


async def test_missing_key_skips_candidate_without_calling_it(
    make_router, upstream, urls, chat, completion, keys
):
    del keys["OPENAI_KEY"]
    router = make_router(keys=keys)
    primary = upstream.post(urls["openai"]).mock(return_value=httpx.Response(200, json=completion("primary")))
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(200, json=completion("backup")))

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 200
    assert primary.call_count == 0
    assert backup.call_count == 1
    assert response.json()["choices"][0]["message"]["content"] == "backup"
    assert response.headers["x-router-model"] == "secondary"
    assert response.headers["x-router-attempts"] == "1"  # a skipped candidate is not an attempt


# -- every candidate failed ------------------------------------------------------------------


async def test_all_fail_is_502_naming_every_model(router, upstream, urls, chat):
    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(500, json=error_body("boom", "server_error"))
    )
    upstream.post(urls["backup"]).mock(side_effect=httpx.ConnectError("refused"))

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 502
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "upstream_error"
    assert error["type"] == "upstream_error"
    assert "primary" in error["message"]
    assert "secondary" in error["message"]
    assert "http_500" in error["message"]
    assert "connect_error" in error["message"]
    assert response.headers["x-router-attempts"] == "3"  # the 500 retried once; the refused connect not
    assert response.headers["x-router-tier"] == "fast"


async def test_all_time_out_is_504(make_router, upstream, urls, chat, completion, sleepy):
    router = make_router(timeouts={"total": 0.2})
    upstream.post(urls["openai"]).mock(side_effect=httpx.ReadTimeout("read timed out"))
    upstream.post(urls["backup"]).mock(side_effect=sleepy(3.0, httpx.Response(200, json=completion())))

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "upstream_timeout"
    assert "primary" in error["message"]
    assert "secondary" in error["message"]


async def test_all_rate_limited_is_429_with_smallest_retry_after(router, upstream, urls, chat):
    limited = error_body("Rate limit reached", "rate_limit_error")
    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(429, json=limited, headers={"retry-after": "120"})
    )
    upstream.post(urls["backup"]).mock(
        return_value=httpx.Response(429, json=limited, headers={"retry-after": "7"})
    )

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    error = response.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "upstream_rate_limited"


async def test_all_rate_limited_reads_retry_after_ms(router, upstream, urls, chat):
    upstream.post(urls["openai"]).mock(return_value=httpx.Response(429, headers={"retry-after-ms": "30000"}))
    upstream.post(urls["backup"]).mock(return_value=httpx.Response(429, headers={"retry-after": "45"}))

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"


async def test_all_rate_limited_reads_retry_after_http_date(router, upstream, urls, chat):
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    upstream.post(urls["openai"]).mock(return_value=httpx.Response(429, headers={"retry-after": when}))
    upstream.post(urls["backup"]).mock(return_value=httpx.Response(429, headers={"retry-after": "600"}))

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 429
    assert 28 <= int(response.headers["retry-after"]) <= 31


async def test_mixed_429_and_500_is_502(router, upstream, urls, chat):
    upstream.post(urls["openai"]).mock(return_value=httpx.Response(429, headers={"retry-after": "3"}))
    upstream.post(urls["backup"]).mock(return_value=httpx.Response(500))

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 502
    assert "retry-after" not in response.headers


async def test_nothing_tried_is_503(make_router, upstream, urls, chat, completion):
    router = make_router(keys={})
    primary = upstream.post(urls["openai"]).mock(return_value=httpx.Response(200, json=completion()))
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(200, json=completion()))

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 503
    assert primary.call_count == 0
    assert backup.call_count == 0
    error = response.json()["error"]
    assert error["code"] == "no_available_provider"
    assert "OPENAI_KEY" in error["message"]
    assert "BACKUP_KEY" in error["message"]
    assert response.headers["x-router-attempts"] == "0"


# -- secrets ---------------------------------------------------------------------------------


def everything_visible(response: httpx.Response, caplog: pytest.LogCaptureFixture) -> str:
    parts = [response.text, *(f"{k}: {v}" for k, v in response.headers.multi_items())]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_text:
            parts.append(record.exc_text)
    return "\n".join(parts)


def capture_all_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="tier_router")
    caplog.set_level(logging.DEBUG, logger="httpx")


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("sk-test-openai-SECRET123", id="key_shaped"),
        pytest.param("gw-plain-SECRETVALUE-987", id="not_key_shaped"),
    ],
)
async def test_keys_never_leak_when_every_candidate_fails(
    secret, make_router, upstream, urls, chat, keys, caplog, capsys
):
    capture_all_logs(caplog)
    keys["OPENAI_KEY"] = secret
    router = make_router(keys=keys)
    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(
            401, json=error_body(f"Incorrect API key provided: {secret}. You can find your key at ...")
        )
    )
    upstream.post(urls["backup"]).mock(
        return_value=httpx.Response(
            500, json=error_body(f"internal error for key {keys['BACKUP_KEY']}", "server_error")
        )
    )

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 502
    access_log = capsys.readouterr().out  # the per-request JSON line goes to stdout
    visible = everything_visible(response, caplog) + "\n" + access_log
    assert "Incorrect API key provided" in response.json()["error"]["message"]  # message kept, key not
    assert '"outcome":"failed"' in access_log  # the request log really was captured
    assert secret not in visible
    assert keys["BACKUP_KEY"] not in visible
    assert "SECRET" not in visible


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("sk-test-openai-SECRET123", id="key_shaped"),
        pytest.param("gw-plain-SECRETVALUE-987", id="not_key_shaped"),
    ],
)
async def test_keys_never_leak_in_a_returned_client_error(
    secret, make_router, upstream, urls, chat, keys, caplog
):
    capture_all_logs(caplog)
    keys["OPENAI_KEY"] = secret
    router = make_router(keys=keys)
    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(
            400, json=error_body(f"Bad request from key {secret}: max_tokens too big")
        )
    )

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 400
    assert "max_tokens too big" in response.json()["error"]["message"]
    assert secret not in everything_visible(response, caplog)


async def test_keys_never_leak_in_transport_errors(router, upstream, urls, chat, keys, caplog):
    capture_all_logs(caplog)
    upstream.post(urls["openai"]).mock(side_effect=httpx.ConnectError(f"proxy refused {keys['OPENAI_KEY']}"))
    upstream.post(urls["backup"]).mock(side_effect=httpx.ReadTimeout(f"timed out for {keys['BACKUP_KEY']}"))

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 502
    visible = everything_visible(response, caplog)
    assert keys["OPENAI_KEY"] not in visible
    assert keys["BACKUP_KEY"] not in visible


# -- the transport shortcut -------------------------------------------------------------------------


async def test_forwarding_works_with_a_client_that_has_no_transport_lookup(
    rules_dict, upstream, urls, chat, completion, keys
):
    """The forwarder uses the client's transport directly via httpx's `_transport_for_url`; a
    client without it (a future httpx) must still forward, through `client.send`, with fallback."""
    from tier_router.forwarder import Forwarder
    from tier_router.provider_keys import KeySource
    from tier_router.routing.loader import parse_rules
    from tier_router.routing.request import parse_chat
    from tier_router.transport import ClientTransport

    class SendOnlyClient:
        """Only the public `send`, as a client whose private lookup was renamed would offer."""

        def __init__(self, client: httpx.AsyncClient) -> None:
            self.inner = client

        async def send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
            return await self.inner.send(request, stream=stream)

    upstream.post(urls["openai"]).respond(503)
    backup = upstream.post(urls["backup"]).respond(200, json=completion("from backup", model="gpt-b"))
    rules = parse_rules(rules_dict(), "t.yaml")
    async with httpx.AsyncClient() as client:
        forwarder = Forwarder(SendOnlyClient(client), KeySource(keys))  # type: ignore[arg-type]
        result = await forwarder.complete(rules.decide(parse_chat(chat())), chat())
    assert result.route.name == "secondary"
    assert [a.outcome for a in result.attempts] == ["http_503", "http_503", "ok"]  # one retry on the 503
    assert json.loads(backup.calls.last.request.content)["model"] == "gpt-b-mini"
    assert all(isinstance(t, ClientTransport) for t in forwarder._transports.values())


async def test_one_deadline_bounds_the_whole_request(
    make_router, rules_dict, upstream, urls, chat, completion, sleepy
):
    """Issue 14: `routing.deadline_s` bounds reaching an answer across every attempt. Each model
    may take 5 s (`total`), the request 0.8 s: the first model is cut at 0.8 s — by the request's
    deadline, not its own timeout, so nothing counts against its breaker — and no second
    candidate is started; the client gets a 504 within about the deadline."""
    rules = rules_dict({"total": 5})
    rules["routing"] = {"deadline_s": 0.8}
    router = make_router(rules=rules)
    slow_a = sleepy(3.0, httpx.Response(200, json=completion()))
    slow_b = sleepy(3.0, httpx.Response(200, json=completion()))
    upstream.post(urls["openai"]).mock(side_effect=slow_a)
    upstream.post(urls["backup"]).mock(side_effect=slow_b)

    started = time.perf_counter()
    response = await router.post("/v1/chat/completions", json=chat())
    elapsed = time.perf_counter() - started

    assert response.status_code == 504
    assert "request_deadline" in response.json()["error"]["message"]
    assert len(slow_a.started) == 1
    assert slow_b.started == []  # no candidate is started past the deadline
    assert elapsed < 2.0


async def test_a_retry_wait_that_would_pass_the_deadline_is_not_taken(
    make_router, rules_dict, upstream, urls, chat, completion
):
    rules = rules_dict()
    rules["routing"] = {"deadline_s": 1.0}
    router = make_router(rules=rules)
    limited = httpx.Response(
        429, json=error_body("Rate limit reached", "rate_limit_error"), headers={"retry-after": "2"}
    )
    primary = upstream.post(urls["openai"]).mock(return_value=limited)
    upstream.post(urls["backup"]).mock(return_value=httpx.Response(200, json=completion(model="gpt-b-mini")))

    response = await router.post("/v1/chat/completions", json=chat())

    assert response.status_code == 200
    assert primary.call_count == 1  # a 2 s wait does not fit in a 1 s deadline: next candidate
