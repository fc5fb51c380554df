"""The candidate loop, driven directly: plain and streamed answers go through the same loop
(every scenario runs in both modes and must give the same attempts and the same breaker
records), the two receptions differ only where they should (deadline, how a 200 is taken in),
every response a failed attempt opened is closed, and a custom reception plugs into the loop
(the seam for response validators)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from tier_router.fallback import AllCandidatesFailed, Attempt, UpstreamClientError
from tier_router.forwarder import PLAIN, Forwarder, Plain, Streamed
from tier_router.provider_keys import KeySource
from tier_router.providers.base import MAX_BAD_CHUNKS, Adapter, UpstreamProtocolError
from tier_router.routing.engine import Decision, ModelRoute
from tier_router.routing.loader import parse_rules
from tier_router.routing.request import parse_chat

KEYS = {"A_KEY": "sk-a-SECRET", "B_KEY": "sk-b-SECRET", "C_KEY": "sk-c-SECRET", "D_KEY": "sk-d"}
TIMEOUTS = {"total": 2.0, "first_token": 1.0, "stall": 1.0}
RULES = {
    "version": 1,
    "providers": {
        name: {
            "kind": "anthropic" if name == "d" else "openai",
            "base_url": f"https://{name}.test" + ("" if name == "d" else "/v1"),
            "api_key_env": f"{name.upper()}_KEY",
            "timeouts": TIMEOUTS,
        }
        for name in "abcd"
    },
    "models": {
        f"m{name}": {"provider": name, "id": f"model-{name}", "price": {"input": 1.0, "output": 1.0}}
        for name in "abcd"
    },
    "tiers": {"chain": ["ma", "mb", "mc"], "with-claude": ["md", "mc"]},
    "default_tier": "chain",
}
MODES = ["plain", "stream"]
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A Health whose plans admit every candidate but `closed`, and record what they are told."""

    def __init__(self, closed: tuple[str, ...] = (), probing: tuple[str, ...] = ()) -> None:
        self.closed = closed
        self.probing = probing  # admitted as probes: not retried
        self.calls: list[tuple[str, str]] = []

    async def plan(self, candidates: tuple[ModelRoute, ...]) -> RecordingPlan:
        return RecordingPlan(self, list(candidates))


class RecordingPlan:
    def __init__(self, recorder: Recorder, queue: list[ModelRoute]) -> None:
        self.recorder = recorder
        self.queue = queue

    async def next(self) -> tuple[ModelRoute, bool] | None:
        if not self.queue:
            return None
        route = self.queue.pop(0)
        return route, route.name not in self.recorder.closed

    async def success(self, route: ModelRoute) -> None:
        self.recorder.calls.append(("success", route.name))

    async def failure(self, route: ModelRoute, level: str) -> None:
        self.recorder.calls.append((f"failure:{level}", route.name))

    async def release(self, route: ModelRoute) -> None:
        self.recorder.calls.append(("release", route.name))

    def retryable(self, route: ModelRoute) -> bool:
        return route.name not in self.recorder.probing


class Body(httpx.AsyncByteStream):
    """A response body that remembers being closed."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.content

    async def aclose(self) -> None:
        self.closed = True


class Upstream:
    """Providers by host: each a handler (or an exception to raise); every body it sends is kept."""

    def __init__(self, **hosts: Handler | BaseException) -> None:
        self.hosts = hosts
        self.bodies: list[Body] = []
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host.split(".")[0]
        self.calls.append(host)
        answer = self.hosts[host]
        if isinstance(answer, BaseException):
            raise answer
        response = answer(request)
        body = Body(response.content)
        self.bodies.append(body)
        return httpx.Response(response.status_code, headers=response.headers, stream=body)


def ok(request: httpx.Request) -> httpx.Response:
    """A good answer in the form the request asked for."""
    if json.loads(request.content).get("stream"):
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": "hi"}}],
        }
        text = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=text)
    message = {"role": "assistant", "content": "hi"}
    return httpx.Response(200, json={"id": "c", "choices": [{"index": 0, "message": message}]})


def status(code: int, **headers: str) -> Handler:
    return lambda request: httpx.Response(code, headers=headers, json={"error": {"message": f"no ({code})"}})


def forwarder_for(upstream: Upstream, health: Recorder, keys: dict[str, str] = KEYS) -> Forwarder:
    client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    return Forwarder(client, KeySource(keys), health)


def decide(tier: str = "chain", **fields: Any) -> tuple[Decision, dict[str, Any]]:
    body = {"model": tier, "messages": [{"role": "user", "content": "hello"}], **fields}
    return parse_rules(RULES, "t.yaml").decide(parse_chat(body)), body


async def run(
    mode: str, forwarder: Forwarder, tier: str = "chain", **fields: Any
) -> tuple[str, list[Attempt]]:
    """One request in `mode`: the serving model and the attempts."""
    if mode == "plain":
        decision, body = decide(tier, **fields)
        completion = await forwarder.complete(decision, body)
        return completion.route.name, completion.attempts
    decision, body = decide(tier, stream=True, **fields)
    opened = await forwarder.open_stream(decision, body, include_usage=False)
    await opened.aclose()
    return opened.route.name, opened.attempts


# -- one loop, two modes -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_refusals_and_failures_move_on_and_count_against_the_right_breaker(mode: str) -> None:
    upstream = Upstream(a=status(503, **{"retry-after": "7"}), b=httpx.ConnectError("refused"), c=ok)
    health = Recorder()
    served, attempts = asyncio.run(run(mode, forwarder_for(upstream, health)))
    assert served == "mc"
    assert [(a.model, a.outcome) for a in attempts] == [
        ("ma", "http_503"),
        ("mb", "connect_error"),
        ("mc", "ok"),
    ]
    assert attempts[0].retry_after == 7.0
    assert attempts[0].detail == "no (503)"
    assert health.calls == [("failure:model", "ma"), ("failure:provider", "mb"), ("success", "mc")]
    assert all(body.closed for body in upstream.bodies)


@pytest.mark.parametrize("mode", MODES)
def test_the_clients_fault_is_returned_at_once_and_the_provider_counts_as_up(mode: str) -> None:
    upstream = Upstream(a=status(422), b=ok, c=ok)
    health = Recorder()
    with pytest.raises(UpstreamClientError) as info:
        asyncio.run(run(mode, forwarder_for(upstream, health)))
    assert (info.value.status, info.value.message, info.value.route.name) == (422, "no (422)", "ma")
    assert [a.outcome for a in info.value.attempts] == ["http_422"]
    assert upstream.calls == ["a"]
    assert health.calls == [("success", "ma")]


@pytest.mark.parametrize("mode", MODES)
def test_candidates_that_cannot_be_tried_are_skipped(mode: str) -> None:
    upstream = Upstream(a=ok, b=ok, c=status(500))
    health = Recorder(closed=("ma",))
    keys = {k: v for k, v in KEYS.items() if k != "B_KEY"}
    with pytest.raises(AllCandidatesFailed) as info:
        asyncio.run(run(mode, forwarder_for(upstream, health, keys)))
    assert [(a.model, a.outcome, a.tried) for a in info.value.attempts] == [
        ("ma", "breaker_open", False),
        ("mb", "missing_key", False),
        ("mc", "http_500", True),
        ("mc", "http_500", True),  # a first 500 is retried once; each failure is reported
    ]
    assert health.calls == [("release", "mb"), ("failure:model", "mc"), ("failure:model", "mc")]
    assert upstream.calls == ["c", "c"]  # breaker_open: nothing


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_probe_is_not_retried_and_a_retried_failure_counts_twice(mode: str) -> None:
    upstream = Upstream(a=status(503), b=status(503), c=ok)
    health = Recorder(probing=("ma",))
    served, attempts = asyncio.run(run(mode, forwarder_for(upstream, health)))
    assert served == "mc"
    assert [(a.model, a.outcome, a.retry) for a in attempts] == [
        ("ma", "http_503", False),  # a probe: its breaker has just re-opened
        ("mb", "http_503", False),
        ("mb", "http_503", True),
        ("mc", "ok", False),
    ]
    assert health.calls == [
        ("failure:model", "ma"),
        ("failure:model", "mb"),
        ("failure:model", "mb"),
        ("success", "mc"),
    ]
    assert upstream.calls == ["a", "b", "b", "c"]


@pytest.mark.parametrize("mode", MODES)
def test_a_provider_that_cannot_express_the_request_is_released_and_the_next_one_serves(mode: str) -> None:
    upstream = Upstream(c=ok)
    health = Recorder()
    served, attempts = asyncio.run(run(mode, forwarder_for(upstream, health), "with-claude", n=2))
    assert served == "mc"
    assert [(a.outcome, a.status) for a in attempts] == [("unsupported", 400), ("ok", None)]
    assert health.calls == [("release", "md"), ("success", "mc")]


@pytest.mark.parametrize("mode", MODES)
def test_keys_are_redacted_from_failure_details(mode: str) -> None:
    upstream = Upstream(a=httpx.ReadError(f"reset while sending {KEYS['A_KEY']}"), b=ok)
    _, attempts = asyncio.run(run(mode, forwarder_for(upstream, Recorder())))
    assert attempts[0].outcome == "connection_error"
    assert KEYS["A_KEY"] not in attempts[0].detail


# -- where the two receptions differ -------------------------------------------------------------------


def test_each_reception_has_its_deadline() -> None:
    decision, _ = decide()
    route = decision.candidates[0]
    assert Plain().deadline(route) == route.provider.timeouts.total == 2.0
    assert Streamed(False).deadline(route) == route.provider.timeouts.first_token == 1.0


def sse(text: str, content_type: str = "text/event-stream") -> Handler:
    return lambda request: httpx.Response(200, headers={"content-type": content_type}, text=text)


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (sse("data: {}\n\n", "application/json"), "expected an event stream"),
        (sse(": keep-alive\n\n"), "ended before any content"),
        (sse('data: {"choices": []}\n\n'), "ended before any content"),
        (sse("data: not json\n\n" * (MAX_BAD_CHUNKS + 1)), "not JSON"),  # one is skipped
    ],
)
def test_a_stream_is_only_served_once_it_has_content(answer: Handler, detail: str) -> None:
    upstream = Upstream(a=answer, b=ok)
    health = Recorder()
    served, attempts = asyncio.run(run("stream", forwarder_for(upstream, health)))
    assert served == "mb"
    assert attempts[0].outcome == "invalid_response"
    assert detail in attempts[0].detail
    assert health.calls == [("failure:model", "ma"), ("success", "mb")]
    assert all(body.closed for body in upstream.bodies)


def test_a_plain_answer_that_is_not_valid_moves_on() -> None:
    upstream = Upstream(a=lambda request: httpx.Response(200, text="<html>"), b=ok)
    served, attempts = asyncio.run(run("plain", forwarder_for(upstream, Recorder())))
    assert (served, attempts[0].outcome) == ("mb", "invalid_response")


@pytest.mark.parametrize("mode", MODES)
def test_the_deadline_bounds_the_whole_attempt(mode: str) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        raise AssertionError("not reached")

    class SlowA(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.host == "a.test":
                return await slow(request)
            return ok(request)

    rules = {**RULES, "providers": {**RULES["providers"]}}
    rules["providers"]["a"] = {**rules["providers"]["a"], "timeouts": {"total": 0.05, "first_token": 0.05}}
    body = {"model": "chain", "messages": [{"role": "user", "content": "hello"}], "stream": mode == "stream"}
    decision = parse_rules(rules, "t.yaml").decide(parse_chat(body))
    forwarder = Forwarder(httpx.AsyncClient(transport=SlowA()), KeySource(KEYS), Recorder())

    async def main() -> list[Attempt]:
        if mode == "plain":
            return (await forwarder.complete(decision, body)).attempts
        opened = await forwarder.open_stream(decision, body, include_usage=False)
        await opened.aclose()
        return opened.attempts

    attempts = asyncio.run(main())
    assert [a.outcome for a in attempts] == ["timeout", "ok"]
    assert attempts[0].elapsed_ms < 1000


@pytest.mark.parametrize("mode", MODES)
def test_a_cancelled_attempt_closes_its_response_and_stays_cancelled(mode: str) -> None:
    started = asyncio.Event()
    body = Body(b"")

    class Stalls(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            started.set()
            await asyncio.sleep(5)
            yield b""

        async def aclose(self) -> None:
            body.closed = True

    def stalls(request: httpx.Request) -> httpx.Response:
        content_type = "text/event-stream" if mode == "stream" else "application/json"
        return httpx.Response(200, headers={"content-type": content_type}, stream=Stalls())

    forwarder = forwarder_for(Upstream(), Recorder())
    forwarder.client = httpx.AsyncClient(transport=httpx.MockTransport(stalls))

    async def main() -> None:
        task = asyncio.create_task(run(mode, forwarder))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert body.closed


# -- the seam: a reception of one's own ----------------------------------------------------------------


class NonEmpty(Plain):
    """A response validator: an answer without text is not an answer."""

    async def receive(
        self, adapter: Adapter, response: httpx.Response
    ) -> tuple[dict[str, Any], bytes | None]:
        data, raw = await super().receive(adapter, response)
        if not data["choices"][0]["message"].get("content"):
            raise UpstreamProtocolError("the answer is empty")
        return data, raw


def test_a_validating_reception_moves_on_like_any_failure() -> None:
    empty = {"id": "e", "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}]}
    upstream = Upstream(a=lambda request: httpx.Response(200, json=empty), b=ok)
    health = Recorder()
    decision, body = decide()
    served = asyncio.run(forwarder_for(upstream, health).serve(decision, body, NonEmpty()))
    assert served.route.name == "mb"
    assert [(a.outcome, a.detail) for a in served.attempts] == [
        ("invalid_response", "the answer is empty"),
        ("ok", ""),
    ]
    assert health.calls == [("failure:model", "ma"), ("success", "mb")]
    assert served.secret == KEYS["B_KEY"]
    assert served.answer[0]["choices"][0]["message"]["content"] == "hi"


def test_the_plain_reception_keeps_the_raw_body_only_when_it_is_the_openai_answer() -> None:
    upstream = Upstream(a=ok)
    decision, body = decide()
    served = asyncio.run(forwarder_for(upstream, Recorder()).serve(decision, body, PLAIN))
    data, raw = served.answer
    assert raw is not None
    assert json.loads(raw) == data
