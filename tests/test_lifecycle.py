"""The request lifecycle, in process: one id, one settle, one log line — whatever happens.

The end-to-end proofs (real SDK, real server, SQLite and DynamoDB, Lambda) are in
tests/lifecycle/; these pin the mechanism: cancellation at every await of a request, a
client gone at every point of a stream, a second `finish`, and what the line says.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from tier_router.app import create_app
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings
from tier_router.store.memory import MemoryStore

RULES: dict[str, Any] = {
    "version": 1,
    "providers": {"mock": {"kind": "mock", "base_url": "mock://m"}},
    "models": {"small": {"provider": "mock", "id": "mock-small", "price": {"input": 1.0, "output": 2.0}}},
    "tiers": {"fast": ["small"]},
    "default_tier": "fast",
    "budgets": {"daily_usd": 100},
}
CHAT = "/v1/chat/completions"


def make_app(**settings: Any) -> Any:
    options: dict[str, Any] = {"rules_path": "rules.yaml", "log_requests": True, **settings}
    app = create_app(Settings(**options), rules=parse_rules(RULES), store=MemoryStore())
    app.gateway.access_log._stream = io.StringIO()
    return app


def lines_of(app: Any) -> list[dict[str, Any]]:
    text = app.gateway.access_log._stream.getvalue()
    return [json.loads(line) for line in text.splitlines() if '"event":"request"' in line]


async def totals(app: Any) -> tuple[int, int, int, int]:
    """(ledger requests, ledger micro-USD, budget committed, budget spent)."""
    report = await app.gateway.spend.ledger.today()
    budgets = await app.gateway.spend.status()
    overall = budgets["budgets"]["global"]
    return report.requests, report.total, micro(overall["committed_usd"]), micro(overall["spent_usd"])


def micro(usd: str) -> int:
    return int(Decimal(usd) * 1_000_000)


def scope_for(body: dict[str, Any], path: str = CHAT) -> tuple[dict[str, Any], bytes]:
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    return scope, raw


def body(stream: bool) -> dict[str, Any]:
    return {
        "model": "auto",
        "messages": [{"role": "user", "content": "tell me a story about a cat " * 5}],
        "stream": stream,
        "max_tokens": 50,
    }


def staying_client(raw: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI `receive` that delivers the body, then never reports a disconnect."""
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()  # the client never hangs up on its own
        raise AssertionError("unreachable")

    return receive


async def run_until(app: Any, request: dict[str, Any], steps: int | None) -> list[dict[str, Any]]:
    """Run one request; cancel its task after `steps` loop iterations (None: let it finish)."""
    scope, raw = scope_for(request)
    sent: list[dict[str, Any]] = []
    receive = staying_client(raw)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    task = asyncio.ensure_future(app(scope, receive, send))
    if steps is not None:
        for _ in range(steps):
            if task.done():
                break
            await asyncio.sleep(0)
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await app.gateway.lifecycle.drainer.drain()
    return sent


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_cancelled_at_every_step_is_recorded_exactly_once(stream: bool) -> None:
    """Cancel the request task after 0, 1, 2, ... loop iterations, until one finishes: every
    run has exactly one line, settles at most once, and leaves no reservation behind."""

    async def scenario() -> int:
        app = make_app()
        completed, steps = False, 1  # (cancelled before its first step, a task never ran: no request)
        while not completed and steps < 2000:
            before = await totals(app)
            lines_before = len(lines_of(app))
            sent = await run_until(app, body(stream), steps)
            lines = lines_of(app)[lines_before:]
            assert len(lines) == 1, (steps, lines)
            line = lines[0]
            requests, total, committed, spent = await totals(app)
            admitted = requests - before[0]
            assert admitted in (0, 1), steps
            assert committed == spent, f"a reservation leaked after {steps} steps"
            assert total - before[1] == spent - before[3] == (line.get("cost_micro_usd") or 0)
            if admitted:
                assert line["tier"] == "fast"
            started = [m for m in sent if m["type"] == "http.response.start"]
            if started:
                headers = dict(started[0]["headers"])
                assert headers[b"x-router-request-id"].decode() == line["request_id"]
            if sent and sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body"):
                completed = line["outcome"] == "ok"
            steps += 1
        assert completed, "the request never completed: the step bound is too low"
        return steps

    assert asyncio.run(scenario()) > 3  # the request really was cut at several points


def test_finish_twice_is_one_line_and_one_settle() -> None:
    async def scenario() -> tuple[int, int]:
        app = make_app()
        scope, _ = scope_for(body(False))
        exchange = app.gateway.lifecycle.begin(scope)
        await app.gateway.lifecycle.finish(exchange, scope)
        await app.gateway.lifecycle.finish(exchange, scope)
        await app.gateway.lifecycle.drainer.drain()
        return len(lines_of(app)), len(app.gateway.lifecycle.drainer.pending)

    assert asyncio.run(scenario()) == (1, 0)


@pytest.mark.parametrize("cut_after", [1, 2, 3])
def test_a_stream_abandoned_mid_way_is_priced_from_what_was_streamed(cut_after: int) -> None:
    """The client's socket fails on the n-th body send (what uvicorn reports for a closed
    connection): the line says client_gone with an estimated cost, and the ledger and the
    budget carry exactly that cost."""

    async def scenario() -> tuple[dict[str, Any], tuple[int, int, int, int]]:
        app = make_app()
        scope, raw = scope_for(body(True))
        scope["asgi"]["spec_version"] = "2.4"
        bodies = 0
        receive = staying_client(raw)

        async def send(message: dict[str, Any]) -> None:
            nonlocal bodies
            if message["type"] == "http.response.body":
                bodies += 1
                if bodies > cut_after:
                    raise OSError("connection reset by peer")

        await app(scope, receive, send)  # the app hears the failed send; nothing escapes
        await app.gateway.lifecycle.drainer.drain()
        (line,) = lines_of(app)
        return line, await totals(app)

    line, (requests, total, committed, spent) = asyncio.run(scenario())
    assert (line["outcome"], line["status"], line["cost_estimated"]) == ("client_gone", 200, True)
    assert requests == 1
    assert committed == spent == total == line["cost_micro_usd"] > 0


def test_refusals_before_routing_get_an_id_and_a_line() -> None:
    async def scenario() -> list[tuple[int, str, dict[str, Any]]]:
        app = make_app(api_keys=("rk-1",))
        results = []
        for path, headers in ((CHAT, []), ("/nope", []), ("/v1/models", [])):
            scope, raw = scope_for({"model": "auto", "messages": []}, path)
            scope["headers"] = headers
            sent: list[dict[str, Any]] = []

            async def receive(raw: bytes = raw) -> dict[str, Any]:
                return {"type": "http.request", "body": raw, "more_body": False}

            async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
                sent.append(message)

            if path == "/v1/models":
                scope["method"] = "GET"
            await app(scope, receive, send)
            start = sent[0]
            results.append((start["status"], dict(start["headers"])[b"x-router-request-id"].decode()))
        await app.gateway.lifecycle.drainer.drain()
        lines = lines_of(app)
        return [(status, rid, line) for (status, rid), line in zip(results, lines, strict=True)]

    results = asyncio.run(scenario())
    assert [status for status, _, _ in results] == [401, 404, 401]
    for status, request_id, line in results:
        assert line["request_id"] == request_id
        assert line["status"] == status
        assert line["outcome"] == "refused"
    assert len({rid for _, rid, _ in results}) == 3


def test_a_burst_of_finishes_reaches_the_store_a_few_at_a_time() -> None:
    """Hundreds of requests ending at once must not queue inside the store (where the wait
    counts against each call's deadline): settles take turns."""
    from tier_router.lifecycle import SETTLE_CONCURRENCY

    class Slow(MemoryStore):
        active = most = 0

        async def _add(self, *args: Any) -> Any:
            settling = "spent" in args[1] or "requests" in args[1]  # budget settle, ledger record
            Slow.active += settling
            Slow.most = max(Slow.most, Slow.active)
            try:
                await asyncio.sleep(0.002)
                return await super()._add(*args)
            finally:
                Slow.active -= settling

    async def scenario() -> tuple[int, int]:
        app = create_app(
            Settings(rules_path="rules.yaml", log_requests=False, background_settle=True),
            rules=parse_rules(RULES),
            store=Slow(),
        )
        await asyncio.gather(*(run_until(app, body(False), None) for _ in range(120)))
        await app.gateway.lifecycle.drainer.drain()
        return (await app.gateway.spend.ledger.today()).requests, Slow.most

    requests, most = asyncio.run(scenario())
    assert requests == 120
    assert 1 < most <= SETTLE_CONCURRENCY < 120  # bounded, and below the burst
