"""Issue 15, the adversary: clients and models that try to break the cascade's promises.

The real router (default configuration: SQLite store, logging on) in front of a scripted
provider (`tests.support.answer_script`); plain (`budget`) and held-back (header `x-hold`)
cascades to the premium tier.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.agreement import collect, quiesce
from tests.support.answer_script import Answer, AnswerStack, answer_rules, answer_stack, cost
from tests.support.clients import wait_until
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration

HOLD = {"x-hold": "1"}
JSON_MODE = {"type": "json_object"}
DEADLINE_S = 2.5


def rules(url: str) -> dict[str, Any]:
    return answer_rules(
        url,
        tiers={
            "budget": {"models": ["cheap"], "cascade": {"to": "premium", "on": ["json", "refusal"]}},
            "standard": ["mid"],
            "premium": ["good"],
        },
        rules=[
            {
                "name": "held",
                "tier": "budget",
                "when": {"header": {"name": "x-hold", "present": True}},
                "cascade": {"to": "premium", "on": ["json", "refusal"], "stream": "hold"},
            }
        ],
        breakers={"failure_threshold": 2, "window_s": 60, "recovery_s": 60, "recovery_max_s": 60},
        routing={"deadline_s": DEADLINE_S},
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnswerStack]:
    with answer_stack(tmp_path_factory.mktemp("adversary"), rules) as stack:
        yield stack


def body(script: str, model: str = "budget", **params: Any) -> dict[str, Any]:
    """`model: auto` for a held stream (the `held` rule routes; naming a tier skips the rules)."""
    return {"model": model, "messages": [{"role": "user", "content": f"hi [script={script}]"}], **params}


def auth(**extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {ROUTER_KEY}", **extra}


def test_a_client_that_leaves_while_the_escalation_answers_still_pays_for_the_first_answer(
    stack: AnswerStack,
) -> None:
    """The cheap answer failed and was paid for; the client leaves while the premium tier is
    still answering. The request is recorded once, and the cheap answer's cost is on it (it
    used to be lost: the escalation was recorded only once the premium answer came)."""
    cheap = Answer("{not json", completion_tokens=40)
    stack.app.script("leave-plain", cheap=[cheap], good=[Answer('{"ok": 1}', delay_s=3.0)])
    before = stack.router.ledger()
    gone_before = sum(line["outcome"] == "client_gone" for line in stack.router.chat_lines())

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            stack.router.url + "/v1/chat/completions",
            json=body("leave-plain", response_format=JSON_MODE),
            headers=auth(),
            timeout=1.0,
        )

    def gone() -> list[dict[str, Any]]:
        return [line for line in stack.router.chat_lines() if line["outcome"] == "client_gone"]

    wait_until(lambda: len(gone()) == gone_before + 1, 15, "the abandoned request's log line")
    line = gone()[-1]
    assert line["status"] == 499
    assert line["cost_micro_usd"] == cost("cheap", cheap)
    assert line["model"] == "cheap"
    assert line["validation"].startswith("json: ")
    wait_until(lambda: stack.router.ledger().requests == before.requests + 1, 15, "the request counted")
    after = stack.router.ledger()
    assert after.total - before.total == cost("cheap", cheap)
    assert after.budget_committed == after.budget_spent


def sdk(stack: AnswerStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)


def held(stack: AnswerStack, script: str, **params: Any) -> tuple[str, dict[str, str]]:
    """A held-back stream read to its end: the text and the response headers."""
    with sdk(stack).chat.completions.with_streaming_response.create(
        **body(script, "auto", stream=True, stream_options={"include_usage": True}, **params),
        extra_headers=HOLD,
    ) as response:
        chunks = list(response.parse())
        headers = dict(response.headers)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), headers


def test_a_client_that_leaves_while_a_held_streams_escalation_answers_pays_for_the_held_answer(
    stack: AnswerStack,
) -> None:
    cheap = Answer("{not json at all", completion_tokens=30)
    stack.app.script("leave-held", cheap=[cheap], good=[Answer('{"ok": 1}', delay_s=3.0)])
    before = stack.router.ledger()
    lines_before = len(stack.router.chat_lines())

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            stack.router.url + "/v1/chat/completions",
            json=body("leave-held", "auto", stream=True, response_format=JSON_MODE),
            headers=auth(**HOLD),
            timeout=1.0,
        )

    wait_until(lambda: len(stack.router.chat_lines()) == lines_before + 1, 15, "the request's log line")
    (line,) = stack.router.chat_lines()[lines_before:]
    assert (line["outcome"], line["status"], line["model"]) == ("client_gone", 499, "cheap")
    assert line["cost_micro_usd"] == cost("cheap", cheap)  # read whole: priced from its usage
    assert line["cost_estimated"] is False
    wait_until(lambda: stack.router.ledger().requests == before.requests + 1, 15, "the request counted")
    after = stack.router.ledger()
    assert after.total - before.total == cost("cheap", cheap)
    assert after.budget_committed == after.budget_spent


def test_held_answers_given_up_early_never_open_a_breaker(stack: AnswerStack) -> None:
    refusal = Answer("I'm sorry, but I can't help with that. " + "la " * 200)
    stack.app.script("early-again", cheap=[refusal], good=[Answer("Here it is.")])
    for _ in range(5):  # more than failure_threshold (2) within the window
        text, headers = held(stack, "early-again")
        assert (text, headers["x-router-model"]) == ("Here it is.", "good")

    breakers = stack.router.get("/v1/router/status").json()["breakers"]

    assert breakers["cheap"] == {"provider": "closed", "model": "closed"}


def test_an_escalation_tier_that_refuses_the_request_as_the_clients_fault_serves_the_answer_in_hand(
    stack: AnswerStack,
) -> None:
    cheap = Answer("{half")
    stack.app.script("refused", cheap=[cheap], good=[Answer(status=400)])

    plain = sdk(stack).chat.completions.with_raw_response.create(**body("refused", response_format=JSON_MODE))
    text, headers = held(stack, "refused", response_format=JSON_MODE)

    assert plain.parse().choices[0].message.content == text == "{half"
    for served in (plain.headers, headers):
        assert served["x-router-model"] == "cheap"
        assert served["x-router-validation"].startswith("json: ")
        line = stack.line(served["x-router-request-id"])
        assert (line["outcome"], line["status"]) == ("ok", 200)
        assert [(a["model"], a["outcome"]) for a in line["attempts"]] == [
            ("cheap", "ok"),
            ("good", "http_400"),
        ]
        assert line["cost_micro_usd"] == cost("cheap", cheap)


def test_the_deadline_covers_the_escalation(stack: AnswerStack) -> None:
    """`routing.deadline_s` (2.5 s) is one deadline for the whole cascade: the cheap tier takes
    1 s, the premium tier would take 5 s; the answer in hand is served at the deadline."""
    cheap = Answer("{late", delay_s=1.0)
    stack.app.script("deadline", cheap=[cheap], good=[Answer('{"ok": 1}', delay_s=5.0)])

    started = time.monotonic()
    plain = sdk(stack).chat.completions.with_raw_response.create(
        **body("deadline", response_format=JSON_MODE)
    )
    plain_s = time.monotonic() - started
    started = time.monotonic()
    text, headers = held(stack, "deadline", response_format=JSON_MODE)
    held_s = time.monotonic() - started

    assert plain.parse().choices[0].message.content == text == "{late"
    assert DEADLINE_S - 0.2 < plain_s < DEADLINE_S + 1.0
    assert DEADLINE_S - 0.2 < held_s < DEADLINE_S + 1.0
    for served in (plain.headers, headers):
        line = stack.line(served["x-router-request-id"])
        assert [(a["model"], a["outcome"]) for a in line["attempts"]] == [
            ("cheap", "ok"),
            ("good", "request_deadline"),
        ]
        assert line["cost_micro_usd"] == cost("cheap", cheap)


def test_many_simultaneous_escalations_leave_the_log_the_ledger_and_the_budget_agreeing(
    stack: AnswerStack,
) -> None:
    """60 requests at once on the default SQLite store: plain and held escalations read to the
    end, held answers given up early, and clients that leave while the premium tier answers
    (plain and held). Once idle: one line per request, the ledger counts each once, its cost and
    the budget's spent total are the lines' sum, nothing is left reserved — and each answer read
    to the end cost both its answers exactly."""
    cheap, good = Answer("{broken", completion_tokens=11), Answer('{"ok": true}', completion_tokens=6)
    slow = Answer('{"ok": true}', delay_s=2.0)
    stack.app.script("many", cheap=[cheap], good=[good])
    leaving = [f"many-leave-{index}" for index in range(24)]
    for name in leaving:
        stack.app.script(name, cheap=[cheap], good=[slow])
    stack.app.script(
        "many-early", cheap=[Answer("I'm sorry, but I can't help with that. " + "la " * 50)], good=[good]
    )
    both = cost("cheap", cheap) + cost("good", good)
    window = quiesce(stack.router)

    async def leave_once_escalated(name: str, request: asyncio.Task[httpx.Response]) -> None:
        """Leave while the premium tier answers: once the router sent it this request (so the
        cheap answer is in hand however loaded the machine is), before its answer comes."""
        for _ in range(3000):  # the scripted provider runs in another thread: poll it
            if stack.app.calls(name, "good") or request.done():
                break
            await asyncio.sleep(0.01)
        request.cancel()

    async def one(kind: str, client: httpx.AsyncClient) -> tuple[str, int | None, str | None]:
        streamed = kind.startswith("held")
        name = leaving.pop() if kind.endswith("leave") else "many-early" if kind == "held-early" else "many"
        payload = body(name, "auto" if streamed else "budget", stream=streamed)
        if kind != "held-early":
            payload["response_format"] = JSON_MODE
        headers = auth(**HOLD) if streamed else auth()
        request = asyncio.ensure_future(
            client.post("/v1/chat/completions", json=payload, headers=headers, timeout=30)
        )
        if kind.endswith("leave"):
            await leave_once_escalated(name, request)
        try:
            response = await request
        except asyncio.CancelledError:
            return kind, None, None
        return kind, response.status_code, response.headers.get("x-router-request-id")

    async def scenario() -> list[tuple[str, int | None, str | None]]:
        kinds = ["plain", "held", "held-early", "leave", "held-leave"] * 12
        async with httpx.AsyncClient(base_url=stack.router.url) as client:
            return await asyncio.gather(*(one(kind, client) for kind in kinds))

    seen = asyncio.run(scenario())
    observed = collect(window, len(seen))

    lines = observed.lines
    assert len(lines) == len(seen)
    assert len({line["request_id"] for line in lines}) == len(seen)
    assert observed.requests == len(seen)
    total = sum(line["cost_micro_usd"] for line in lines)
    assert observed.cost == total
    assert observed.budget_spent == total
    assert observed.budget_committed == observed.budget_spent
    by_id = {line["request_id"]: line for line in lines}
    for kind, status, request_id in seen:
        if status is None:
            continue
        assert status == 200, kind
        line = by_id[request_id]
        assert line["model"] == "good", (kind, line)
        if kind in ("plain", "held"):
            assert line["cost_micro_usd"] == both, (kind, line)
    gone = [line for line in lines if line["outcome"] == "client_gone"]
    assert len(gone) == 24
    assert all(line["cost_micro_usd"] >= cost("cheap", cheap) for line in gone)
