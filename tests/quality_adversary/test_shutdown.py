"""Adversary: SIGTERM while judgements hang on a reference tier that never answers.

Promise (docs/quality-loop.md): a judgement runs in the background, "finished at shutdown
before the process exits"; one judgement line per judgement, also when it failed; judging's
reservations are settled, so the router's hard cap is not left holding money for work that
will never happen. The drain waits its bound (10 s) for them, then `Judging.stop` cancels what
is left: each is counted failed, logged, and its reservations charged in full (a call was in
flight: what the provider bills is unknown).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest
from tier_router.quality.runner import CANCELLED

from tests.judging.judge_script import judge_stack, judging_rules, verdict
from tests.support.answer_script import Answer
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration
N = 6


def rules(url: str) -> dict[str, Any]:
    rules = judging_rules(url, {"sample": 1, "budget_usd": 50, "max_pending": 100})
    rules["providers"]["good"]["timeouts"] = {"first_token": 120.0, "stall": 120.0, "total": 120.0}
    return rules


def test_sigterm_with_hanging_judgements_settles_and_logs_them(tmp_path: Path) -> None:
    with judge_stack(tmp_path, rules) as stack:
        stack.app.script("s", cheap=[Answer("served")] * N, good=[Answer("reference")] * N)
        stack.app.judges["s"] = lambda prompt: verdict(7, 7, "tie")
        stack.app.gated = {"good"}
        stack.app.gate.clear()
        client = openai.OpenAI(
            base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20
        )
        ids = []
        for i in range(N):
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": f"[script=s] q{i}"}]
            )
            assert raw.parse().choices[0].message.content == "served"
            ids.append(raw.headers["x-router-request-id"])
        deadline = time.monotonic() + 10
        while stack.app.waiting.get("good", 0) < N:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stack.router.stop(timeout=30)  # raises if the process outlives the drain bound
        lines = stack.judgements()
        router_budget = stack.item(f"spend:{time.strftime('%Y-%m-%d', time.gmtime())}")
        own = stack.item(f"judge:{time.strftime('%Y-%m-%d', time.gmtime())}")
        item = stack.quality_item()
        stack.app.gate.set()
    # Before the fix: no line at all, nothing counted, and each dead judgement's worst case
    # ($0.33) left held on the router's hard cap (`budget:<day>` committed > spent) until its TTL.
    assert sorted(line["request_id"] for line in lines) == sorted(ids)
    assert {line["error"] for line in lines} == {CANCELLED}
    assert all(line["cost_micro_usd"] == {"reference": None, "judge": None} for line in lines)
    assert router_budget.get("committed", 0) == router_budget.get("spent", 0)
    assert own.get("committed", 0) == own.get("spent", 0)
    assert item.get("judge_failed") == N
    assert item["judge_cost"] == own["spent"]  # the report's judging cost is what was charged
