"""Issue 16: `POST /v1/feedback` on the real router (`tier-router serve`, SQLite store, logging on),
the chat requests made with the openai SDK: only the request's own router key may score it, the
score counts once against its tier, rule, model and arm, every field is checked, and only
answered chat requests can be scored."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tier_router.quality.facts import Fact

from tests.feedback.support import (
    API_KEYS,
    KEYS,
    WINDOW_DAYS,
    StoreView,
    chat,
    counted,
    error_of,
    expected,
    post,
    rules,
    sqlite_view,
)
from tests.support.answer_script import Answer, AnswerStack, answer_stack
from tests.support.clients import wait_until
from tests.support.router_process import REQUEST_ID, tier_router_command
from tests.support.stack import sqlite_url

pytestmark = pytest.mark.integration
ALICE, BOB = KEYS["alice"], KEYS["bob"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AnswerStack, StoreView]]:
    workdir = tmp_path_factory.mktemp("feedback")
    store = sqlite_url(workdir)
    with answer_stack(workdir, rules, store, env={"TIER_ROUTER_API_KEYS": API_KEYS}) as s:
        s.app.script("ok", cheap=[Answer("fine")], mid=[Answer("fine")], good=[Answer("fine")])
        yield s, sqlite_view(store)


def answered(stack: tuple[AnswerStack, StoreView], key: str = ALICE, **options: Any):
    s, view = stack
    result = chat(s.router.url, key, "ok", **options)
    view.wait_for_fact(result.request_id)
    return result


def feedback_lines(s: AnswerStack, request_id: str) -> list[dict[str, Any]]:
    out = []
    for line in s.router.stdout_lines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("type") == "feedback" and record.get("request_id") == request_id:
                out.append(record)
    return out


def test_no_key_or_a_wrong_key_is_401(stack) -> None:
    s, _ = stack
    request = answered(stack)
    for key in (None, "rk-not-a-key-of-this-router"):
        response = post(s.router.url, key, {"request_id": request.request_id, "score": 1})
        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_api_key"
    assert post(s.router.url, ALICE, {"request_id": request.request_id, "score": 1}).status_code == 200


def test_another_keys_request_is_not_found_like_an_unknown_one(stack) -> None:
    s, view = stack
    request = answered(stack)
    before = view.feedback()

    theirs = post(s.router.url, BOB, {"request_id": request.request_id, "score": 0.2})
    unknown = post(s.router.url, BOB, {"request_id": "no-such-request", "score": 0.2})

    assert theirs.status_code == unknown.status_code == 404
    assert error_of(theirs)["code"] == error_of(unknown)["code"] == "request_not_found"
    assert error_of(theirs)["param"] == "request_id"
    assert counted(before, view.feedback()) == {}
    mine = post(s.router.url, ALICE, {"request_id": request.request_id, "score": 0.2})
    assert mine.status_code == 200
    assert mine.json() == {
        "object": "feedback",
        "request_id": request.request_id,
        "score": 0.2,
        "counted": True,
    }
    assert post(s.router.url, BOB, {"request_id": request.request_id, "score": 0.2}).status_code == 404


def test_a_score_counts_on_the_requests_tier_rule_model_and_arm(stack) -> None:
    s, view = stack
    answers = [answered(stack, user=f"user-{i}") for i in range(6)]
    assert {a.rule for a in answers} == {"treated", "short"}  # both arms, so both tiers and models
    for request, score in zip(answers, (0.8, 0, 1, 0.25, 0.5, 0.999), strict=True):
        before = view.feedback()
        response = post(s.router.url, ALICE, {"request_id": request.request_id, "score": score})
        assert response.status_code == 200, response.text
        assert counted(before, view.feedback()) == expected(request, round(score * 1000))


@pytest.mark.parametrize(("label", "milli"), [("good", 1000), ("neutral", 500), ("bad", 0)])
def test_a_label_counts_as_its_score(stack, label: str, milli: int) -> None:
    s, view = stack
    request = answered(stack, stream=True)  # a streamed answer has its facts too
    before = view.feedback()
    response = post(s.router.url, ALICE, {"request_id": request.request_id, "label": label})
    assert response.status_code == 200
    assert response.json()["score"] == milli / 1000
    assert counted(before, view.feedback()) == expected(request, milli)


def test_the_feedback_line_and_the_calls_own_request_line(stack) -> None:
    s, _ = stack
    request = answered(stack)
    comment = f"leaked {ALICE} and {BOB} in \n a comment \u00e9"
    response = post(s.router.url, ALICE, {"request_id": request.request_id, "score": 0.5, "comment": comment})
    assert response.status_code == 200
    wait_until(lambda: feedback_lines(s, request.request_id), 5, "the feedback line")

    (line,) = feedback_lines(s, request.request_id)
    line.pop("ts")
    assert line == {
        "type": "feedback",
        "request_id": request.request_id,
        "key": "alice",
        **request.dims(),
        "score": 0.5,
        "label": None,
        "comment": line["comment"],
    }
    assert ALICE not in line["comment"]
    assert BOB not in line["comment"]
    assert line["comment"].startswith("leaked ")
    assert line["comment"].endswith(" a comment \u00e9")
    call = s.line(response.headers[REQUEST_ID])
    assert (call["path"], call["status"], call["outcome"], call["key"]) == (
        "/v1/feedback",
        200,
        "ok",
        "alice",
    )
    assert ALICE not in s.router.stdout_path.read_text()


def test_a_second_feedback_on_a_request_is_409_and_not_counted(stack) -> None:
    s, view = stack
    request = answered(stack)
    assert post(s.router.url, ALICE, {"request_id": request.request_id, "score": 1}).status_code == 200
    before = view.feedback()

    again = post(s.router.url, ALICE, {"request_id": request.request_id, "label": "bad"})

    assert again.status_code == 409
    assert error_of(again)["code"] == "feedback_exists"
    assert counted(before, view.feedback()) == {}


def test_concurrent_posts_on_one_request_count_once(stack) -> None:
    s, view = stack
    requests = [answered(stack, user=f"race-{i}") for i in range(3)]
    before = view.feedback()
    with ThreadPoolExecutor(24) as pool:
        posts = [
            (r, pool.submit(post, s.router.url, ALICE, {"request_id": r.request_id, "score": 0.4}))
            for r in requests
            for _ in range(8)
        ]
        statuses = [(r.request_id, f.result().status_code) for r, f in posts]

    for request in requests:
        mine = sorted(status for rid, status in statuses if rid == request.request_id)
        assert mine == [200] + [409] * 7
    total: dict[tuple[str, str], tuple[int, int]] = {}
    for request in requests:
        for slot, (n, m) in expected(request, 400).items():
            total[slot] = (total.get(slot, (0, 0))[0] + n, total.get(slot, (0, 0))[1] + m)
    assert counted(before, view.feedback()) == total


BAD_BODIES = [
    ({"score": 1}, "request_id", "missing_required_parameter"),
    ({"request_id": None, "score": 1}, "request_id", "missing_required_parameter"),
    ({"request_id": 12, "score": 1}, "request_id", "invalid_type"),
    ({"request_id": "", "score": 1}, "request_id", "empty_string"),
    ({"request_id": "x" * 129, "score": 1}, "request_id", "string_above_max_length"),
    ({"request_id": "r"}, "score", "missing_required_parameter"),
    ({"request_id": "r", "score": "0.5"}, "score", "invalid_type"),
    ({"request_id": "r", "score": True}, "score", "invalid_type"),
    ({"request_id": "r", "score": [1]}, "score", "invalid_type"),
    ({"request_id": "r", "score": 1.5}, "score", "decimal_above_max_value"),
    ({"request_id": "r", "score": 2}, "score", "integer_above_max_value"),
    ({"request_id": "r", "score": -0.1}, "score", "decimal_below_min_value"),
    ({"request_id": "r", "label": "great"}, "label", "invalid_value"),
    ({"request_id": "r", "label": 1}, "label", "invalid_type"),
    ({"request_id": "r", "label": ["good"]}, "label", "invalid_type"),
    ({"request_id": "r", "score": 1, "label": "good"}, "label", "invalid_value"),
    ({"request_id": "r", "score": 1, "comment": 5}, "comment", "invalid_type"),
    ({"request_id": "r", "score": 1, "comment": "c" * 2001}, "comment", "string_above_max_length"),
    ({"request_id": "r", "score": 1, "rating": 5}, "rating", "unknown_parameter"),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD_BODIES)
def test_every_bad_field_is_a_400_naming_it(stack, body: dict[str, Any], param: str, code: str) -> None:
    s, view = stack
    request = answered(stack)
    if body.get("request_id") == "r":
        body = {**body, "request_id": request.request_id}
    before = view.feedback()

    response = post(s.router.url, ALICE, body)

    assert response.status_code == 400
    error = error_of(response)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert param in error["message"] or param == "label"
    assert counted(before, view.feedback()) == {}
    assert post(s.router.url, ALICE, {"request_id": request.request_id, "score": 1}).status_code == 200


@pytest.mark.parametrize("raw", [b"[1]", b"not json", b'{"request_id": "r", "score": NaN}'])
def test_a_body_that_is_not_a_json_object_is_400(stack, raw: bytes) -> None:
    s, _ = stack
    response = httpx.post(
        s.router.url + "/v1/feedback",
        content=raw,
        headers={"authorization": f"Bearer {ALICE}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


def test_failed_refused_and_other_requests_have_no_facts(stack) -> None:
    s, view = stack
    s.app.script("down", cheap=[Answer(status=500)], mid=[Answer(status=500)])
    client = openai.OpenAI(base_url=s.router.url + "/v1", api_key=ALICE, max_retries=0, timeout=20)
    ids = []
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi [script=down]"}]
        )
    assert failed.value.status_code >= 500
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi [script=ok]"}], temperature=7
        )
    ids += [failed.value.response.headers[REQUEST_ID], refused.value.response.headers[REQUEST_ID]]
    models = httpx.get(s.router.url + "/v1/models", headers={"authorization": f"Bearer {ALICE}"})
    ids.append(models.headers[REQUEST_ID])
    later = answered(stack)  # settled after them: their facts, had they any, would be written by now
    assert view.fact(later.request_id) is not None

    for request_id in ids:
        s.line(request_id)
        assert view.fact(request_id) is None
        response = post(s.router.url, ALICE, {"request_id": request_id, "score": 1})
        assert response.status_code == 404
        assert error_of(response)["code"] == "request_not_found"


def test_the_facts_are_kept_for_the_window_and_an_expired_one_is_not_found(stack) -> None:
    s, view = stack
    request = answered(stack)
    assert view.fact(request.request_id) == {"key": "alice", **request.dims(), "open": 1}
    fact = Fact(key="alice", tier=request.tier, rule=request.rule, model=request.model, arm=request.arm)
    view.plant("expired-1", fact, expires_at=time.time() - 1)
    view.plant("live-1", fact, expires_at=time.time() + WINDOW_DAYS * 86_400)
    before = view.feedback()

    expired = post(s.router.url, ALICE, {"request_id": "expired-1", "score": 1})
    live = post(s.router.url, ALICE, {"request_id": "live-1", "score": 1})

    assert expired.status_code == 404
    assert error_of(expired)["code"] == "request_not_found"
    assert live.status_code == 200
    assert counted(before, view.feedback()) == expected(request, 1000)


def test_tier_router_labels_turns_the_feedback_line_into_a_label(stack, tmp_path: Path) -> None:
    s, _ = stack
    request = answered(stack)
    assert post(s.router.url, ALICE, {"request_id": request.request_id, "score": 0.25}).status_code == 200
    wait_until(lambda: feedback_lines(s, request.request_id), 5, "the feedback line")
    mine = [line for line in s.router.stdout_lines() if f'"request_id":"{request.request_id}"' in line]
    log = tmp_path / "router.log"
    log.write_text("\n".join(mine) + "\n")

    done = subprocess.run(
        [*tier_router_command(), "labels", str(log)], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    (label,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert label == {"features": s.line(request.request_id)["features"], "scores": {request.tier: 0.25}}


def test_an_escalated_answer_is_scored_on_the_tier_and_model_that_answered(stack) -> None:
    s, view = stack
    s.app.script("escalate", cheap=[Answer("{no")], mid=[Answer("{}")], good=[Answer('{"ok": 1}')])
    for i in range(200):
        request = chat(
            s.router.url, ALICE, "escalate", user=f"esc-{i}", response_format={"type": "json_object"}
        )
        if request.rule == "short":
            break
    assert (request.rule, request.tier, request.model) == ("short", "premium", "good")
    view.wait_for_fact(request.request_id)
    before = view.feedback()

    assert post(s.router.url, ALICE, {"request_id": request.request_id, "score": 0.9}).status_code == 200

    assert counted(before, view.feedback()) == expected(request, 900)
    assert ("tier", "premium") in expected(request, 900)


def test_the_status_quality_section_shows_the_feedback(stack) -> None:
    s, _ = stack
    request = answered(stack)

    def rows() -> dict[str, dict[str, Any]]:
        status = httpx.get(s.router.url + "/v1/router/status", headers={"authorization": f"Bearer {ALICE}"})
        quality = status.json()["quality"]
        return {dim: quality[dim].get(name) or {"feedback": 0} for dim, name in request.dims().items()}

    before = rows()
    assert post(s.router.url, ALICE, {"request_id": request.request_id, "label": "good"}).status_code == 200
    after = rows()

    for dim, row in after.items():
        assert row["feedback"] == before[dim]["feedback"] + 1, dim
        assert 0 <= row["feedback_score"] <= 1


def test_null_is_absent_for_the_optional_fields(stack) -> None:
    s, view = stack
    request = answered(stack)
    before = view.feedback()
    body = {"request_id": request.request_id, "score": None, "label": "neutral", "comment": None}

    response = post(s.router.url, ALICE, body)

    assert response.status_code == 200, response.text
    assert counted(before, view.feedback()) == expected(request, 500)
