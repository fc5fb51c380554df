"""The per-request log line: routing facts, latency split, tokens, cost — and EMF metrics."""

from __future__ import annotations

import asyncio
import json

import httpx
from tier_router.app import create_app
from tier_router.settings import Settings
from tier_router.telemetry import DIMENSIONS, NAMESPACE

from tests.support.demo import unjudged_demo
from tests.support.router_app import asgi_client

DEMO = unjudged_demo()
PROMPT = "Why is the sky blue? my-private-prompt-text"


def one_request(settings: Settings, capsys) -> tuple[httpx.Response, dict]:
    app = create_app(settings)

    async def run() -> httpx.Response:
        async with asgi_client(app) as client:
            body = {"model": "auto", "messages": [{"role": "user", "content": PROMPT}]}
            return await client.post(
                "/v1/chat/completions", json=body, headers={"authorization": "Bearer rk"}
            )

    capsys.readouterr()
    response = asyncio.run(run())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (line,) = [entry for entry in lines if entry.get("event") == "request"]
    return response, line


def test_request_line_has_routing_facts_and_no_prompt_or_key(capsys) -> None:
    response, line = one_request(Settings(rules_path=DEMO, api_keys=("team-a=rk",)), capsys)
    assert response.status_code == 200
    assert line["request_id"] == response.headers["x-router-request-id"]
    assert line["key"] == "team-a"
    assert (line["rule"], line["tier"], line["model"], line["provider"]) == (
        "hard-question",
        "premium",
        "large",
        "mock-smart",
    )
    assert line["status"] == 200
    assert line["prompt_tokens"] > 0
    assert line["completion_tokens"] > 0
    assert line["cost_micro_usd"] == round(float(response.headers["x-router-cost-usd"]) * 1_000_000)
    assert line["upstream_ms"] >= 150  # the mock provider's configured latency
    assert abs(line["latency_ms"] - line["upstream_ms"] - line["router_ms"]) < 0.05
    text = json.dumps(line)
    assert "my-private-prompt-text" not in text
    assert "rk" not in line.values()
    assert "_aws" not in line  # EMF is off locally by default


def test_emf_block_names_metrics_that_are_present_as_fields(capsys) -> None:
    settings = Settings(rules_path=DEMO, api_keys=("team-a=rk",), emf_metrics=True)
    _, line = one_request(settings, capsys)
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == DIMENSIONS
    for metric in directive["Metrics"]:
        assert isinstance(line[metric["Name"]], int | float), metric["Name"]
    for dimension in {d for dims in DIMENSIONS for d in dims}:
        assert isinstance(line[dimension], str)
    assert line["Requests"] == 1
    assert line["Errors"] == 0
    assert line["CostUSD"] == line["cost_micro_usd"] / 1_000_000
    assert line["PromptTokens"] == line["prompt_tokens"]
    assert isinstance(line["_aws"]["Timestamp"], int)
    assert "_usage" not in line
    assert "my-private-prompt-text" not in json.dumps(line)


def test_breaker_opening_is_an_event_and_a_metric(capsys) -> None:
    from tier_router.telemetry import AccessLog

    log = AccessLog(emf=True)
    log.event("BreakerOpened", breaker="provider:openai", change="opened")
    line = json.loads(capsys.readouterr().out)
    assert line["event"] == "BreakerOpened"
    assert line["BreakerOpened"] == 1
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [["breaker", "change"]]
    assert directive["Metrics"] == [{"Name": "BreakerOpened", "Unit": "Count"}]


def test_buffered_log_writes_many_lines_at_once() -> None:
    import io

    from tier_router.telemetry import AccessLog

    stream = io.StringIO()
    log = AccessLog(stream, buffered=True)

    async def burst() -> str:
        for i in range(5):
            log.write({"event": "request", "n": i})
        before = stream.getvalue()
        await asyncio.sleep(0.3)  # past FLUSH_S
        return before

    before_flush = asyncio.run(burst())
    assert before_flush == ""  # nothing written per request...
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["n"] for line in lines] == [0, 1, 2, 3, 4]  # ...then all of them, in order


def test_an_escalation_is_a_metric_of_the_routed_tier_and_not_a_fallback() -> None:
    """A cascade's lines: Validated / Escalations by `routed_tier` (the tier the rules chose),
    and the escalated tier's first attempt is not counted as a fallback."""
    from tier_router.telemetry import add_emf

    escalated = {
        "tier": "premium",
        "escalated_from": "budget",
        "cascade": "premium",
        "escalations": [{"tier": "budget", "model": "small", "validator": "json"}],
        "attempts": [{"model": "small", "tried": True}, {"model": "large", "tried": True}],
        "status": 200,
    }
    passed = {"tier": "budget", "cascade": "premium", "attempts": [{"model": "small", "tried": True}]}
    unchecked = {"tier": "budget", "attempts": [{"model": "small"}, {"model": "medium"}]}
    for record in (escalated, passed, unchecked):
        add_emf(record, 0.0)

    assert (escalated["routed_tier"], escalated["Validated"], escalated["Escalations"]) == ("budget", 1, 1)
    assert escalated["Fallbacks"] == 0
    assert (passed["routed_tier"], passed["Validated"], passed["Escalations"]) == ("budget", 1, 0)
    assert "Validated" not in unchecked
    assert unchecked["Fallbacks"] == 1
    directive = escalated["_aws"]["CloudWatchMetrics"][1]
    assert directive["Dimensions"] == [["routed_tier"]]
    assert [m["Name"] for m in directive["Metrics"]] == ["Validated", "Escalations"]
    assert len(unchecked["_aws"]["CloudWatchMetrics"]) == 1
