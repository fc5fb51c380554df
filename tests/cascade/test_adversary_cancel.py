"""Issue 15, the adversary: a cascading request cancelled at every await, in process.

The harness of tests/test_lifecycle.py (cancel the request's task after 0, 1, 2, ... loop
iterations until one run completes) on a cascade between two mock providers: `cheap` answers
JSON requests with broken JSON every time (`flaw_rate=1&flaws=json`), `good` answers cleanly.
Every run: one log line, ledger = budget = the line's cost, nothing left reserved — and once
the cheap model has answered, its answer is paid for whatever happens next.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytest
from tier_router.app import create_app
from tier_router.providers.mock import MockTransport
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings
from tier_router.store.memory import MemoryStore

from tests.test_lifecycle import lines_of, run_until, totals

RULES: dict[str, Any] = {
    "version": 1,
    "providers": {
        "cheap": {"kind": "mock", "base_url": "mock://cheap?flaw_rate=1&flaws=json"},
        "good": {"kind": "mock", "base_url": "mock://good"},
    },
    "models": {
        "cheap": {"provider": "cheap", "id": "c", "price": {"input": 1.0, "output": 2.0}},
        "good": {"provider": "good", "id": "g", "price": {"input": 10.0, "output": 20.0}},
    },
    "tiers": {
        "plain": {"models": ["cheap"], "cascade": {"to": "premium", "on": ["json"]}},
        "held": {"models": ["cheap"], "cascade": {"to": "premium", "on": ["json"], "stream": "hold"}},
        "premium": ["good"],
    },
    "default_tier": "plain",
    "budgets": {"daily_usd": 100},
}


def make_app() -> Any:
    settings = Settings(rules_path="rules.yaml", log_requests=True)  # type: ignore[arg-type]
    app = create_app(settings, rules=parse_rules(RULES), store=MemoryStore())
    app.gateway.access_log._stream = io.StringIO()
    return app


def request(stream: bool) -> dict[str, Any]:
    return {
        "model": "held" if stream else "plain",
        "messages": [{"role": "user", "content": "give me a JSON object about a cat"}],
        "response_format": {"type": "json_object"},
        "stream": stream,
        "max_tokens": 200,
    }


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "held"])
def test_a_cascade_cancelled_at_every_step_is_recorded_once_and_pays_for_what_answered(
    stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered: list[str] = []
    handle = MockTransport.handle_async_request

    async def recording(self: MockTransport, request: httpx.Request) -> httpx.Response:
        response = await handle(self, request)
        answered.append(request.url.host)
        return response

    monkeypatch.setattr(MockTransport, "handle_async_request", recording)

    async def scenario() -> tuple[int, int]:
        app = make_app()
        completed, steps, in_hand_runs = False, 1, 0
        while not completed and steps < 3000:
            before = await totals(app)
            lines_before = len(lines_of(app))
            answered.clear()
            sent = await run_until(app, request(stream), steps)
            lines = lines_of(app)[lines_before:]
            assert len(lines) == 1, (steps, lines)
            line = lines[0]
            requests, total, committed, spent = await totals(app)
            cost = line.get("cost_micro_usd") or 0
            assert requests - before[0] in (0, 1), steps
            assert committed == spent, f"a reservation leaked after {steps} steps"
            assert total - before[1] == spent - before[3] == cost, (steps, line)
            if "cheap" in answered and not stream:
                assert cost > 0, f"cancelled after {steps} steps: the cheap answer was not paid for ({line})"
            if "cheap" in answered and "good" not in answered:
                in_hand_runs += 1
            escalations = line.get("escalations") or []
            assert cost >= sum(e["cost_micro_usd"] or 0 for e in escalations), (steps, line)
            if sent and sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body"):
                completed = line["outcome"] == "ok"
                assert line["model"] == "good", line
                assert len(escalations) == 1, line
            steps += 1
        assert completed, "the request never completed: the step bound is too low"
        return steps, in_hand_runs

    steps, in_hand_runs = asyncio.run(scenario())
    assert steps > 5
    assert in_hand_runs > 0  # runs were cut after the cheap answer, before the premium one
