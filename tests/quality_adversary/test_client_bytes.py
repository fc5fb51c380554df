"""Adversary: judging never changes the client's answer. The same scripted answer served by a
rule that samples every request and by one that samples none, plain and streamed, while the
reference tier and the judge hang: the client's status, headers (but the request id and the
rule's name) and body bytes are the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.judging.judge_script import judge_stack, judging_rules
from tests.support.answer_script import Answer
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration
VARYING = {"x-router-request-id", "x-router-rule", "date"}


def rules(url: str) -> dict[str, Any]:
    rules = judging_rules(
        url,
        {"sample": 0, "budget_usd": 50, "max_pending": 100},
        rules=[
            {
                "name": "judged",
                "tier": "budget",
                "when": {"last_user_matches": "JUDGED"},
                "quality": {"sample": 1},
            },
            {"name": "plain1", "tier": "budget", "when": {"last_user_matches": "PLAIN1"}},
        ],
    )
    return rules


def exchange(url: str, word: str, stream: bool) -> tuple[int, dict[str, str], bytes]:
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": f"[script=c] {word}"}]}
    if stream:
        body["stream"] = True
    with httpx.Client(timeout=30) as client:
        response = client.post(
            url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {ROUTER_KEY}"}
        )
    headers = {k: v for k, v in response.headers.items() if k not in VARYING}
    return response.status_code, headers, response.content


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_sampled_answer_is_byte_for_byte_an_unsampled_one(tmp_path: Path, stream: bool) -> None:
    with judge_stack(tmp_path, rules) as stack:
        stack.app.script("c", cheap=[Answer("the same answer", piece=3)] * 4, good=[Answer("ref")] * 4)
        stack.app.gated = {"good", "judge"}  # judging hangs while the clients are answered
        stack.app.gate.clear()
        try:
            judged = [exchange(stack.router.url, "JUDGED", stream) for _ in range(2)]
            plain = [exchange(stack.router.url, "PLAIN1", stream) for _ in range(2)]
            assert stack.app.waiting.get("good", 0) >= 1
        finally:
            stack.app.gate.set()
    assert judged[0][0] == 200
    assert [(s, h) for s, h, _ in judged] == [(s, h) for s, h, _ in plain]
    assert [b for _, _, b in judged] == [b for _, _, b in plain]
