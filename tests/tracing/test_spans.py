"""With tracing on, each chat request is one server span and each provider attempt one client
span under it, with the GenAI semantic-convention attributes and the router's: shown for a
plain request, a stream, a fallback, refusals and an incoming W3C traceparent, all through
the real `openai` SDK."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.tracing.conftest import PROMPT, SECRET, Traced

pytestmark = pytest.mark.anyio
MESSAGES: Any = [{"role": "user", "content": PROMPT}]


def one_server(spans: list[ReadableSpan]) -> ReadableSpan:
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(servers) == 1, [s.name for s in spans]
    return servers[0]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    found = [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
    return sorted(found, key=lambda s: s.start_time or 0)


def assert_within(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert parent.start_time is not None
    assert parent.end_time is not None
    assert child.start_time is not None
    assert child.end_time is not None
    assert parent.start_time <= child.start_time <= child.end_time <= parent.end_time


def assert_no_content(spans: list[ReadableSpan], *texts: str) -> None:
    """No prompt, answer or secret in any attribute or event of any span."""
    for span in spans:
        values = [str(v) for v in (span.attributes or {}).values()]
        values += [str(v) for e in span.events for v in (e.attributes or {}).values()]
        for text in (*texts, SECRET):
            assert all(text not in value for value in values), (span.name, text)


async def test_plain_request(traced: Callable[..., Traced]) -> None:
    router = traced()
    raw = await router.sdk.chat.completions.with_raw_response.create(
        model="auto", messages=MESSAGES, max_tokens=200
    )
    reply = raw.parse()
    spans = await router.settled()

    server = one_server(spans)
    assert server.name == "chat auto"
    attrs = dict(server.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "auto"
    assert attrs["gen_ai.request.max_tokens"] == 200
    assert attrs["gen_ai.response.model"] == reply.model == "mock-answer"
    assert attrs["gen_ai.provider.name"] == "tier_router.mock"
    assert reply.usage is not None
    assert attrs["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert attrs["gen_ai.response.finish_reasons"] == (reply.choices[0].finish_reason,)
    assert attrs["gen_ai.response.id"] == reply.id
    assert attrs["tier_router.request_id"] == raw.headers["x-router-request-id"]
    assert attrs["tier_router.tier"] == "solo"
    assert attrs["tier_router.rule"] == "default"
    assert attrs["tier_router.outcome"] == "ok"
    assert attrs["tier_router.attempts"] == 1
    assert attrs["tier_router.model"] == "answer"
    assert attrs["tier_router.stream"] is False
    assert Decimal(str(attrs["tier_router.cost_usd"])) == Decimal(raw.headers["x-router-cost-usd"])
    assert attrs["http.response.status_code"] == 200
    assert "error.type" not in attrs
    assert server.status.status_code is StatusCode.UNSET
    assert server.parent is None  # no traceparent came in: a trace of its own
    assert dict(server.resource.attributes)["service.name"] == "tier-router"

    (attempt,) = children(spans, server)
    assert attempt.kind is SpanKind.CLIENT
    assert attempt.name == "chat mock-answer"
    a = dict(attempt.attributes or {})
    assert a["gen_ai.request.model"] == "mock-answer"
    assert a["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert a["tier_router.attempt.outcome"] == "ok"
    assert "error.type" not in a
    assert "tier_router.fallback_reason" not in a
    assert_within(attempt, server)
    assert_no_content(spans, PROMPT, reply.choices[0].message.content or "<none>")


async def test_streamed_request(traced: Callable[..., Traced]) -> None:
    router = traced()
    stream = await router.sdk.chat.completions.create(
        model="solo", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    spans = await router.settled()

    server = one_server(spans)
    assert server.name == "chat solo"
    attrs = dict(server.attributes or {})
    assert attrs["tier_router.stream"] is True
    assert attrs["tier_router.outcome"] == "ok"
    assert attrs["gen_ai.request.model"] == "solo"
    assert attrs["gen_ai.response.model"] == "mock-answer"
    assert usage is not None
    assert text
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens
    (attempt,) = children(spans, server)
    assert dict(attempt.attributes or {})["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert_within(attempt, server)
    assert_no_content(spans, PROMPT, text)


async def test_fallback_has_two_attempt_spans_the_first_failed(traced: Callable[..., Traced]) -> None:
    router = traced()
    raw = await router.sdk.chat.completions.with_raw_response.create(model="fallback", messages=MESSAGES)
    assert raw.headers["x-router-model"] == "answer"
    spans = await router.settled()

    server = one_server(spans)
    attrs = dict(server.attributes or {})
    assert attrs["tier_router.attempts"] == 2
    assert attrs["tier_router.outcome"] == "ok"
    assert server.status.status_code is StatusCode.UNSET  # the request was answered
    first, second = children(spans, server)
    assert first.name == "chat gone-model-1"
    failed = dict(first.attributes or {})
    assert failed["error.type"] == "connect_error"
    assert failed["tier_router.fallback_reason"] == "connect_error"
    assert failed["gen_ai.provider.name"] == "openai"
    assert failed["server.address"] == "127.0.0.1"
    assert isinstance(failed["server.port"], int)
    assert "gen_ai.usage.input_tokens" not in failed
    assert first.status.status_code is StatusCode.ERROR
    assert second.name == "chat mock-answer"
    assert second.status.status_code is StatusCode.UNSET
    assert "tier_router.fallback_reason" not in dict(second.attributes or {})
    assert (first.end_time or 0) <= (second.start_time or 0)  # one after the other
    for attempt in (first, second):
        assert_within(attempt, server)
    assert_no_content(spans, PROMPT)


async def test_unauthorized_request_is_a_refused_server_span(traced: Callable[..., Traced]) -> None:
    router = traced(api_keys=("the-only-router-key-0123",))
    with pytest.raises(openai.AuthenticationError):
        await router.sdk.chat.completions.create(model="auto", messages=MESSAGES)
    spans = await router.settled()

    server = one_server(spans)
    attrs = dict(server.attributes or {})
    assert server.name == "chat"  # not parsed: no model known
    assert attrs["http.response.status_code"] == 401
    assert attrs["tier_router.outcome"] == "refused"
    assert attrs["error.type"] == "invalid_api_key"
    assert attrs["tier_router.attempts"] == 0
    assert "gen_ai.request.model" not in attrs
    assert "tier_router.cost_usd" not in attrs
    assert server.status.status_code is StatusCode.UNSET  # the client's error, not the router's
    assert children(spans, server) == []
    assert_no_content(spans, PROMPT, "router-key-123456789")


async def test_bad_request_is_a_refused_server_span(traced: Callable[..., Traced]) -> None:
    router = traced()
    with pytest.raises(openai.NotFoundError):
        await router.sdk.chat.completions.create(model="no-such-model", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        await router.sdk.chat.completions.create(model="auto", messages=[], max_tokens=-5)
    spans = await router.settled()

    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert [dict(s.attributes or {})["http.response.status_code"] for s in servers] == [404, 400]
    for server in servers:
        attrs = dict(server.attributes or {})
        assert attrs["tier_router.outcome"] == "refused"
        assert attrs["error.type"]
        assert children(spans, server) == []
    assert len(spans) == 2


async def test_incoming_traceparent_makes_the_router_a_child(traced: Callable[..., Traced]) -> None:
    router = traced()
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    await router.sdk.chat.completions.create(
        model="auto",
        messages=MESSAGES,
        extra_headers={"traceparent": f"00-{trace_id}-{parent_id}-01", "tracestate": "app=router-test"},
    )
    spans = await router.settled()

    server = one_server(spans)
    assert server.parent is not None
    assert server.parent.is_remote
    assert server.parent.span_id == int(parent_id, 16)
    assert server.context.trace_id == int(trace_id, 16)
    assert server.context.trace_state.get("app") == "router-test"
    (attempt,) = children(spans, server)
    assert attempt.context.trace_id == int(trace_id, 16)


async def test_unsampled_traceparent_records_nothing(traced: Callable[..., Traced]) -> None:
    """The caller decided not to sample this trace (flags 00): the router's spans follow it."""
    router = traced()
    await router.sdk.chat.completions.create(
        model="auto",
        messages=MESSAGES,
        extra_headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"},
    )
    assert await router.settled() == []


async def test_other_paths_are_not_traced(traced: Callable[..., Traced]) -> None:
    router = traced()
    assert (await router.http.get("/healthz")).status_code == 200
    await router.sdk.models.list()
    assert await router.settled() == []
