"""Issue 16: how many requests are judged (the sample rate, per rule), and what judging may
spend (its own daily budget, and the router's hard cap) — on the real router, each test with
its own (stopped at the end, so every judgement in flight is drained and logged)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.judging.judge_script import JudgeStack, judge_stack, judging_rules, verdict
from tests.support.answer_script import Answer
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration

SOMETIMES, RATE, N = "SOMETIMES", 0.3, 300


def binomial_interval(n: int, p: float, confidence: float = 0.999) -> tuple[int, int]:
    """The central interval holding `confidence` of Binomial(n, p)'s mass (exact)."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    tail = (1 - confidence) / 2
    low, mass = 0, 0.0
    while mass + pmf[low] < tail:
        mass += pmf[low]
        low += 1
    high, mass = n, 0.0
    while mass + pmf[high] < tail:
        mass += pmf[high]
        high -= 1
    return low, high


CLIENTS: dict[str, openai.OpenAI] = {}


def ask(stack: JudgeStack, text: str, model: str = "auto") -> str:
    url = stack.router.url
    client = CLIENTS.get(url) or CLIENTS.setdefault(
        url, openai.OpenAI(base_url=url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)
    )
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": f"[script=s] {text}"}]
    )
    assert raw.parse().choices[0].message.content == "served"  # every client is answered as usual
    return str(raw.headers["x-router-request-id"])


def script(stack: JudgeStack) -> None:
    stack.app.script("s", cheap=[Answer("served")], good=[Answer("reference")], judge=[verdict(7, 7, "tie")])


def test_the_sample_rate_per_rule(tmp_path: Path) -> None:
    """A rule sampling 0.3: over 300 requests, the judged count lies in Binomial(300, 0.3)'s
    99.9% interval; a rule sampling 1 has every request judged; the file's rate (0) leaves the
    rest alone, as it does a request naming the reference tier."""

    def rules(url: str) -> dict[str, Any]:
        return judging_rules(
            url,
            {"sample": 0, "max_pending": 1000, "budget_usd": 100},
            rules=[
                {
                    "name": "some",
                    "tier": "budget",
                    "when": {"last_user_matches": SOMETIMES},
                    "quality": {"sample": RATE},
                },
                {
                    "name": "all",
                    "tier": "budget",
                    "when": {"last_user_matches": "ALWAYS"},
                    "quality": {"sample": 1},
                },
                {
                    "name": "mine",
                    "tier": "budget",
                    "when": {"last_user_matches": "MINE"},
                    "quality": {"sample": 1, "reference": "budget"},
                },
            ],
        )

    with judge_stack(tmp_path, rules) as stack:
        script(stack)
        some = {ask(stack, SOMETIMES) for _ in range(N)}
        every = {ask(stack, "ALWAYS") for _ in range(20)}
        never = {ask(stack, "nothing matches") for _ in range(20)} | {ask(stack, "MINE") for _ in range(5)}
        stack.router.stop()  # drains the judgements in flight
        lines = stack.judgements()
    judged = [line for line in lines if line["request_id"] in some]
    low, high = binomial_interval(N, RATE)
    assert low <= len(judged) <= high, (len(judged), (low, high))
    assert {line["request_id"] for line in lines if line["request_id"] in every} == every
    assert not [line for line in lines if line["request_id"] in never]
    assert all(line["verdict"] == "tie" and line["rule"] in ("some", "all") for line in lines)
    assert len(stack.app.calls("s", "good")) == len(lines)  # one reference answer per judgement


def test_judging_has_its_own_daily_budget(tmp_path: Path) -> None:
    """A budget smaller than one judgement's worst case: skipped before any call, counted."""

    def rules(url: str) -> dict[str, Any]:
        return judging_rules(url, {"sample": 1, "budget_usd": 0.0001})

    with judge_stack(tmp_path, rules) as stack:
        script(stack)
        rid = ask(stack, "hello")
        line = stack.judgement(rid)
        item = stack.quality_item()
        budget = stack.item(f"judge:{line_day(stack)}")
    assert line["verdict"] is None
    assert line["skipped"].startswith("budget: quality.budget_usd")
    assert line["error"] is None
    assert stack.app.calls("s", "good") == []
    assert stack.app.calls("s", "judge") == []
    assert item == {"judge_skipped": 1}
    assert budget.get("committed", 0) == 0  # the refused reservation left nothing behind


def test_the_routers_hard_cap_bounds_judging_too(tmp_path: Path) -> None:
    """The router's global daily cap has room for the client's request, not for a judgement's
    worst case: the client is served, the judgement skipped before any call."""

    def rules(url: str) -> dict[str, Any]:
        rules = judging_rules(url, {"sample": 1, "budget_usd": 10})
        rules["budgets"] = {"daily_usd": 0.05}
        return rules

    with judge_stack(tmp_path, rules) as stack:
        script(stack)
        line = stack.judgement(ask(stack, "hello"))
        ledger = stack.router.ledger()
        own = stack.item(f"judge:{line_day(stack)}")
    assert line["skipped"].startswith("budget: the router's daily hard cap")
    assert stack.app.calls("s", "good") == []
    assert ledger.budget_committed == ledger.budget_spent  # nothing of the judgement held
    assert own.get("committed", 0) == 0  # its own reservation was given back


def test_judgements_past_max_pending_are_skipped(tmp_path: Path) -> None:
    """One judgement in flight (its reference held at the gate) and `max_pending: 1`: the next
    sampled request is answered as usual, its judgement skipped and counted; the first one
    completes once the gate opens."""

    def rules(url: str) -> dict[str, Any]:
        return judging_rules(url, {"sample": 1, "max_pending": 1})

    with judge_stack(tmp_path, rules) as stack:
        script(stack)
        stack.app.gated = {"good"}
        stack.app.gate.clear()
        try:
            first = ask(stack, "first")
            wait_for(lambda: stack.app.waiting.get("good", 0) == 1)
            second = ask(stack, "second")
            busy = stack.judgement(second)
        finally:
            stack.app.gate.set()
        judged = stack.judgement(first)
        item = stack.quality_item()
    assert busy["skipped"].startswith("busy")
    assert busy["verdict"] is None
    assert judged["verdict"] == "tie"
    assert (item["judged"], item["judge_skipped"]) == (1, 1)
    assert "judge_failed" not in item


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def line_day(stack: JudgeStack) -> str:
    import time

    return time.strftime("%Y-%m-%d", time.gmtime())
