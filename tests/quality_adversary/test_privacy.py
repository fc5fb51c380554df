"""Adversary: where a prompt may end up (docs/quality-loop.md: prompts are stored only with
`quality.keep_prompts: true`, for `retention_days`, and bodies over 300 KB are not kept).

On the real router (SQLite store, logging on), a sampled, judged and rated request whose
prompt carries a marker: without keep_prompts the marker is nowhere in the store's rows, the
router's log or the exported labels; with it, the body is kept until now + retention_days,
and a body over the limit is not kept at all.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tier_router.cli import main

from tests.judging.judge_script import JudgeStack, judge_stack, judging_rules, prefers
from tests.support.answer_script import Answer
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration
MARKER = "Zq7-private-diagnosis"
DAY_S = 86_400


def rules(keep: bool) -> Any:
    def make(url: str) -> dict[str, Any]:
        quality = {"sample": 1, "budget_usd": 50, "keep_prompts": keep, "retention_days": 3}
        return judging_rules(url, {**quality, "feedback": {"enabled": True}})

    return make


def ask(stack: JudgeStack, text: str) -> str:
    client = openai.OpenAI(base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": f"[script=p] {text}"}]
    )
    assert raw.parse().choices[0].message.content == "served"
    return str(raw.headers["x-router-request-id"])


def rows(db: Path) -> list[tuple[str, str, int | None]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT k, v, expires_at FROM kv"))


def script(stack: JudgeStack, n: int) -> None:
    stack.app.script("p", cheap=[Answer("served")] * n, good=[Answer("reference")] * n)
    stack.app.judges["p"] = prefers("served")


def test_without_keep_prompts_the_prompt_is_in_no_row_no_line_and_no_label(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with judge_stack(tmp_path, rules(keep=False)) as stack:
        script(stack, 1)
        rid = ask(stack, f"about {MARKER} please")
        assert stack.judgement(rid)["verdict"] == "win"
        response = httpx.post(
            stack.router.url + "/v1/feedback",
            headers={"authorization": f"Bearer {ROUTER_KEY}"},
            json={"request_id": rid, "score": 0.5},
        )
        assert response.status_code == 200
        stack.router.stop()
        log = stack.router.stdout_path
    assert any(MARKER in call["messages"][-1]["content"] for call in stack.app.calls("p", "good"))  # judged
    assert not [row for row in rows(tmp_path / "state.db") if MARKER in row[1] or MARKER in row[0]]
    assert not [k for k, _, _ in rows(tmp_path / "state.db") if k.startswith("prompt:")]
    assert MARKER not in log.read_text()
    out = tmp_path / "labels.jsonl"
    assert main(["labels", str(log), "--store", f"sqlite:///{tmp_path / 'state.db'}", "--out", str(out)]) == 0
    text = out.read_text()
    assert MARKER not in text
    assert '"features"' in text
    assert '"request"' not in text


def test_with_keep_prompts_a_body_is_kept_for_retention_days_and_one_over_the_limit_is_not(
    tmp_path: Path,
) -> None:
    big = "x" * (310 * 1024)
    with judge_stack(tmp_path, rules(keep=True)) as stack:
        script(stack, 2)
        small_id = ask(stack, f"about {MARKER}")
        big_id = ask(stack, f"{MARKER} {big}")
        before = time.time()
        small, large = stack.judgement(small_id), stack.judgement(big_id)
        stack.router.stop()
    assert (small["kept_prompt"], large["kept_prompt"]) == (True, False)
    assert large["verdict"] == "win"  # judged, only its prompt not kept
    kept = {k: expires for k, _, expires in rows(tmp_path / "state.db") if k.startswith("prompt:")}
    assert set(kept) == {f"prompt:{small_id}"}
    expires = kept[f"prompt:{small_id}"]
    assert expires is not None
    assert before + 3 * DAY_S - 120 <= expires <= time.time() + 3 * DAY_S + 1
