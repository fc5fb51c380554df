"""Issue 16: sampled judging on the real router (`tier-router serve`, SQLite store, logging on)
in front of scripted providers (cheap, mid, good and a judge), read with the real openai SDK.

Every figure is checked against the scripted usage and the rules file's prices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.judging.judge_script import (
    JudgeStack,
    first_shown,
    judge_cost,
    judge_stack,
    judging_rules,
    prefers,
    price,
    shown,
    verdict,
)
from tests.judging.test_docs import documented_line
from tests.support.answer_script import Answer
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration


def rules(url: str) -> dict[str, Any]:
    return judging_rules(
        url,
        {"sample": 1.0, "budget_usd": 10, "keep_prompts": True, "retention_days": 2, "max_pending": 100},
        judge_total_s=1.0,
        tiers={
            "budget": ["cheap"],
            "standard": ["mid"],
            "premium": ["good"],
            "relay": {"models": ["cheap"], "cascade": {"to": "standard", "on": ["json"]}},
            "held": {
                "models": ["cheap"],
                "cascade": {"to": "standard", "on": [{"min_length": 5}], "stream": "hold"},
            },
        },
        rules=[
            {"name": "escalating", "tier": "relay", "when": {"last_user_matches": "ESCALATE"}},
            {"name": "holding", "tier": "held", "when": {"last_user_matches": "HOLD"}},
            {
                "name": "unsampled",
                "tier": "budget",
                "when": {"last_user_matches": "NEVER"},
                "quality": {"sample": 0},
            },
        ],
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JudgeStack]:
    with judge_stack(tmp_path_factory.mktemp("judging"), rules) as stack:
        yield stack


def client(stack: JudgeStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)


def ask(stack: JudgeStack, name: str, text: str = "hello", **params: Any) -> Any:
    messages = [{"role": "user", "content": f"[script={name}] {text}"}]
    return client(stack).chat.completions.with_raw_response.create(model="auto", messages=messages, **params)


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0)
        for k in {*before, *after}
        if after.get(k, 0) != before.get(k, 0)
    }


def test_a_sampled_answer_is_judged_in_both_orders_counted_and_charged(stack: JudgeStack) -> None:
    served, reference = (
        Answer("CHEAP-ANSWER-1", prompt_tokens=12, completion_tokens=6),
        Answer("GOOD-ANSWER-1", prompt_tokens=12, completion_tokens=20),
    )
    stack.app.script("win", cheap=[served], good=[reference])
    stack.app.judges["win"] = prefers("CHEAP-ANSWER-1")
    item_before, ledger_before = stack.quality_item(), stack.router.ledger()

    raw = ask(stack, "win", "What is 2 + 2?")
    assert raw.parse().choices[0].message.content == "CHEAP-ANSWER-1"
    rid = raw.headers["x-router-request-id"]
    line = stack.judgement(rid)

    # the judge saw the served answer as A, then as B, with the conversation
    prompts = stack.app.judge_prompts("win")
    assert [shown(p) for p in prompts] in (
        [{"A": "CHEAP-ANSWER-1", "B": "GOOD-ANSWER-1"}, {"A": "GOOD-ANSWER-1", "B": "CHEAP-ANSWER-1"}],
        [{"A": "GOOD-ANSWER-1", "B": "CHEAP-ANSWER-1"}, {"A": "CHEAP-ANSWER-1", "B": "GOOD-ANSWER-1"}],
    )
    assert all("What is 2 + 2?" in p for p in prompts)
    (ref_body,) = stack.app.calls("win", "good")
    assert ref_body["model"] == "good-1"
    assert not ref_body.get("stream")
    assert "stream_options" not in ref_body

    judged = judge_cost(verdict(9, 3, "A"))
    assert line["verdict"] == "win"
    assert line["error"] is None
    assert line["skipped"] is None
    assert (line["tier"], line["reference"], line["rule"], line["model"]) == (
        "budget",
        "premium",
        "default",
        "cheap",
    )
    assert (line["reference_model"], line["judge_model"], line["arm"]) == ("good", "judge", None)
    assert sorted(line["orders"], key=lambda o: o["served_as"]) == [
        {"served_as": "A", "better": "A", "a": 9.0, "b": 3.0},
        {"served_as": "B", "better": "B", "a": 3.0, "b": 9.0},
    ]
    assert line["scores"] == {"budget": 0.9, "premium": 0.3}
    assert line["cost_micro_usd"] == {"reference": price("good", reference), "judge": 2 * judged}
    assert line["tokens"]["reference"]["completion_tokens"] == 20
    assert line["tokens"]["judge"]["prompt_tokens"] == 600
    assert line["features"]["message_count"] == 1
    assert line["kept_prompt"] is True
    assert set(documented_line()) == set(line) - {"ts"}  # the docs show the real line's fields
    kept = stack.item(f"prompt:{rid}")
    assert kept["tier"] == "budget"
    assert json.loads(str(kept["body"]))["messages"][0]["content"].endswith("2 + 2?")

    # counted once in today's quality item, on every dimension
    saved = price("good", reference) - price("cheap", served)
    assert delta(item_before, stack.quality_item()) == {
        "judged": 1,
        "judge_cost": price("good", reference) + 2 * judged,
        **{
            f"{dim}_win.{value}": 1
            for dim, value in (("tier", "budget"), ("rule", "default"), ("model", "cheap"))
        },
        **{
            f"{dim}_qs.{value}": 900
            for dim, value in (("tier", "budget"), ("rule", "default"), ("model", "cheap"))
        },
        **{
            f"{dim}_qr.{value}": 300
            for dim, value in (("tier", "budget"), ("rule", "default"), ("model", "cheap"))
        },
        **{
            f"{dim}_sav.{value}": saved
            for dim, value in (("tier", "budget"), ("rule", "default"), ("model", "cheap"))
        },
    }
    # the router's global hard cap counted the judging's cost too (settled: nothing held)
    ledger = stack.router.ledger()
    assert (
        ledger.budget_spent - ledger_before.budget_spent
        == price("cheap", served) + price("good", reference) + 2 * judged
    )
    assert ledger.budget_committed == ledger.budget_spent
    assert ledger.total - ledger_before.total == price("cheap", served)  # the ledger: requests only


def test_a_judge_that_prefers_a_position_gives_a_tie_and_a_worse_answer_loses(stack: JudgeStack) -> None:
    stack.app.script("bias", cheap=[Answer("CHEAP-B")], good=[Answer("GOOD-B")])
    stack.app.judges["bias"] = first_shown
    stack.app.script("lose", cheap=[Answer("CHEAP-L")], good=[Answer("GOOD-L")])
    stack.app.judges["lose"] = prefers("GOOD-L", winner=8, loser=2)
    bias = stack.judgement(ask(stack, "bias").headers["x-router-request-id"])
    lose = stack.judgement(ask(stack, "lose").headers["x-router-request-id"])
    assert bias["verdict"] == "tie"
    assert bias["scores"] == {"budget": 0.7, "premium": 0.7}
    assert lose["verdict"] == "loss"
    assert lose["scores"] == {"budget": 0.2, "premium": 0.8}


def test_judging_never_delays_the_client(stack: JudgeStack) -> None:
    """The reference tier and the judge are held until the client has its whole answer: plain
    and streamed, the client is answered while the judging waits; then it completes."""
    for name, stream in (("held-plain", False), ("held-stream", True)):
        stack.app.script(name, cheap=[Answer(f"ANSWER-{name}")], good=[Answer("GOOD")])
        stack.app.judges[name] = prefers(f"ANSWER-{name}")
        stack.app.gated = {"good", "judge"}
        stack.app.gate.clear()
        try:
            if stream:
                messages = [{"role": "user", "content": f"[script={name}] hi"}]
                with client(stack).chat.completions.with_streaming_response.create(
                    model="auto", messages=messages, stream=True
                ) as response:
                    rid = response.headers["x-router-request-id"]
                    text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
            else:
                raw = ask(stack, name)
                rid, text = raw.headers["x-router-request-id"], raw.parse().choices[0].message.content
            assert text == f"ANSWER-{name}"  # the client has it all...
            wait_for(lambda: stack.app.waiting.get("good", 0) >= 1)  # ...while the reference is held
            assert not [j for j in stack.judgements() if j["request_id"] == rid]
        finally:
            stack.app.gate.set()
            stack.app.waiting.clear()
        assert stack.judgement(rid)["verdict"] == "win"


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("judge", "error"),
    [
        (Answer(status=500), "judge: every candidate failed"),
        (Answer("I cannot decide, both are fine."), "no JSON verdict"),
        (Answer(status=599), "judge: every candidate failed"),  # never answers: its timeout ends it
    ],
    ids=["500", "garbage", "timeout"],
)
def test_judge_failures_never_affect_the_client_and_are_counted(
    stack: JudgeStack, judge: Answer, error: str
) -> None:
    name = f"fail-{judge.status}-{bool(judge.content)}"
    stack.app.script(name, cheap=[Answer("CLIENT-GETS-THIS")], good=[Answer("GOOD")], judge=[judge])
    before = stack.quality_item()
    raw = ask(stack, name)
    assert raw.http_response.status_code == 200
    assert raw.parse().choices[0].message.content == "CLIENT-GETS-THIS"
    line = stack.judgement(raw.headers["x-router-request-id"])
    assert line["verdict"] is None
    assert line["skipped"] is None
    assert error in line["error"]
    changes = delta(before, stack.quality_item())
    assert changes["judge_failed"] == 1
    assert "judged" not in changes
    assert changes["judge_cost"] >= price("good", Answer("GOOD"))  # the reference answer was paid for


def test_a_sampled_stream_is_judged_with_the_text_it_streamed(stack: JudgeStack) -> None:
    stack.app.script(
        "streamed", cheap=[Answer("STREAMED-TEXT-" + "x" * 40, piece=3)], good=[Answer("GOOD-S")]
    )
    stack.app.judges["streamed"] = prefers("GOOD-S")
    messages = [{"role": "user", "content": "[script=streamed] go"}]
    with client(stack).chat.completions.with_streaming_response.create(
        model="auto", messages=messages, stream=True
    ) as response:
        rid = response.headers["x-router-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text == "STREAMED-TEXT-" + "x" * 40
    line = stack.judgement(rid)
    assert line["verdict"] == "loss"
    assert {frozenset(shown(p).values()) for p in stack.app.judge_prompts("streamed")} == {
        frozenset({text, "GOOD-S"})
    }


def test_a_held_back_stream_is_judged_with_the_text_it_served(stack: JudgeStack) -> None:
    stack.app.script("hold", cheap=[Answer("HELD-BACK-ANSWER-" + "y" * 30, piece=5)], good=[Answer("GOOD-H")])
    stack.app.judges["hold"] = prefers("HELD-BACK")
    messages = [{"role": "user", "content": "[script=hold] HOLD it"}]
    with client(stack).chat.completions.with_streaming_response.create(
        model="auto", messages=messages, stream=True
    ) as response:
        rid = response.headers["x-router-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text == "HELD-BACK-ANSWER-" + "y" * 30
    line = stack.judgement(rid)
    assert (line["tier"], line["rule"], line["verdict"]) == ("held", "holding", "win")
    assert {frozenset(shown(p).values()) for p in stack.app.judge_prompts("hold")} == {
        frozenset({text, "GOOD-H"})
    }


def test_an_escalated_answer_is_judged_as_the_tier_that_served_it(stack: JudgeStack) -> None:
    stack.app.script(
        "esc", cheap=[Answer("not json")], mid=[Answer('{"ok": true}')], good=[Answer('{"ok": 1}')]
    )
    stack.app.judges["esc"] = prefers('{"ok": true}')
    raw = ask(stack, "esc", "ESCALATE please", response_format={"type": "json_object"})
    assert raw.headers["x-router-tier"] == "standard"
    assert raw.headers["x-router-escalated-from"] == "relay"
    line = stack.judgement(raw.headers["x-router-request-id"])
    assert (line["tier"], line["model"], line["rule"], line["verdict"]) == (
        "standard",
        "mid",
        "escalating",
        "win",
    )
    assert all('{"ok": true}' in shown(p).values() for p in stack.app.judge_prompts("esc"))


def test_a_judged_sample_becomes_a_label_with_its_request(stack: JudgeStack) -> None:
    """The judgement line and the kept prompt are what `tier-router labels` reads."""
    import asyncio

    from tier_router.quality.export import LabelExport, read_prompts
    from tier_router.store.sqlite import SQLiteStore

    stack.app.script("label", cheap=[Answer("CHEAP-LABEL")], good=[Answer("GOOD-LABEL")])
    stack.app.judges["label"] = prefers("GOOD-LABEL", winner=10, loser=4)
    rid = ask(stack, "label", "label me").headers["x-router-request-id"]
    stack.judgement(rid)
    export = LabelExport()
    export.read(stack.router.stdout_path)

    async def prompts() -> dict[str, Any]:
        store = SQLiteStore(stack.store_path)
        try:
            return await read_prompts(store, [rid], export.stats)
        finally:
            await store.aclose()

    export.rated = {rid: export.rated[rid]}
    (label,) = export.labels(asyncio.run(prompts()))
    assert label.scores == {"budget": 0.4, "premium": 1.0}
    assert label.request is not None
    assert label.request["messages"][0]["content"] == "[script=label] label me"
    assert export.stats.malformed == 0


def test_the_status_endpoint_reports_the_judgements_counted(stack: JudgeStack) -> None:
    """Every judgement of the tests above was logged after it was counted: the report on
    `/v1/router/status` reads the same counts."""
    item = stack.quality_item()
    quality = stack.router.get("/v1/router/status").json()["quality"]
    assert (quality["judged"], quality["judge_failed"]) == (item["judged"], item["judge_failed"])
    assert quality["judge_cost_micro_usd"] == item["judge_cost"]
    budget = quality["tier"]["budget"]
    assert (budget["wins"], budget["ties"], budget["losses"]) == (
        item["tier_win.budget"],
        item["tier_tie.budget"],
        item["tier_loss.budget"],
    )
    assert quality["tier"]["standard"]["wins"] == 1  # the escalated answer, on the tier that served it


def test_what_is_not_eligible_is_never_judged(stack: JudgeStack) -> None:
    """A rule sampling 0, a request for the reference tier itself: answered, never judged."""
    stack.app.script("never", cheap=[Answer("C")], good=[Answer("G")])
    ids = [ask(stack, "never", "NEVER judge me").headers["x-router-request-id"]]
    messages = [{"role": "user", "content": "[script=never] hi"}]
    raw = client(stack).chat.completions.with_raw_response.create(model="premium", messages=messages)
    ids.append(raw.headers["x-router-request-id"])
    marker = ask(stack, "never", "judged")  # sampled: its line comes after theirs would have
    stack.judgement(marker.headers["x-router-request-id"])
    stack.router.stop()  # drains every judgement in flight
    assert not [j for j in stack.judgements() if j["request_id"] in ids]
    assert len(stack.app.calls("never", "good")) == 2  # the premium request, and the marker's reference
