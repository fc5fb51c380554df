"""Adversary: judging's own budget under load, with providers that report no usage.

50 sampled requests at once (plain and streamed), a `budget_usd` that holds only a few
judgements' worst cases, and a reference tier and judge that answer without `usage` (so each
judgement's cost is unknown and its reservations are charged in full). Promises: every client
is answered as usual; judging's spend (`judge:<day>`) never passes `budget_usd`; each sampled
request is accounted exactly once (judged, failed or skipped: one line, one count); the
router's own budget item ends with nothing held.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.judging.judge_script import judge_stack, judging_rules, verdict
from tests.support.answer_script import Answer
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration
N = 50
BUDGET_USD = 1.0


@dataclass
class Unmetered(Answer):
    """A provider answer without `usage` (some OpenAI-compatible servers send none)."""

    def completion(self, model: str) -> dict[str, Any]:
        data = super().completion(model)
        data.pop("usage", None)
        return data


def rules(url: str) -> dict[str, Any]:
    return judging_rules(url, {"sample": 1, "budget_usd": BUDGET_USD, "max_pending": 100})


def test_fifty_sampled_requests_at_once_never_pass_the_judging_budget(tmp_path: Path) -> None:
    with judge_stack(tmp_path, rules) as stack:
        tie = verdict(6, 6, "tie")
        stack.app.script(
            "s",
            cheap=[Answer("served", piece=2)] * N,
            good=[Unmetered("reference")] * N,
            judge=[Unmetered(tie.content)] * (2 * N),
        )
        client = openai.OpenAI(
            base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=30
        )

        def ask(i: int) -> str:
            messages = [{"role": "user", "content": f"[script=s] question {i}"}]
            if i % 2:
                with client.chat.completions.with_streaming_response.create(
                    model="auto", messages=messages, stream=True
                ) as response:
                    text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
                    rid = response.headers["x-router-request-id"]
            else:
                raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages)
                text, rid = raw.parse().choices[0].message.content, raw.headers["x-router-request-id"]
            assert text == "served"
            return str(rid)

        with ThreadPoolExecutor(N) as pool:
            ids = list(pool.map(ask, range(N)))
        stack.router.stop(timeout=30)  # drains every judgement
        lines = stack.judgements()
        day = time.strftime("%Y-%m-%d", time.gmtime())
        own = stack.item(f"judge:{day}")
        router_budget = stack.item(f"spend:{day}")
        item = stack.quality_item()
    assert sorted(line["request_id"] for line in lines) == sorted(ids)  # one line each
    judged = [line for line in lines if line["verdict"] is not None]
    skipped = [line for line in lines if line["skipped"]]
    assert judged  # some fit the budget...
    assert skipped  # ...not all 50
    assert all(line["skipped"].startswith("budget: quality.budget_usd") for line in skipped)
    assert item.get("judged", 0) + item.get("judge_failed", 0) + item.get("judge_skipped", 0) == N
    assert item.get("judged", 0) == len(judged)
    assert own["spent"] <= BUDGET_USD * 1_000_000  # charged in full, and still within the budget
    assert own.get("committed", 0) == own["spent"]  # nothing left held
    # Before the fix: judge_cost counted only known costs, so the report said judging cost $0
    # while its budget was spent (and later judgements skipped for it).
    assert item["judge_cost"] == own["spent"]
    assert router_budget.get("committed", 0) == router_budget.get("spent", 0)
