"""Issue 16, feedback on DynamoDB (moto server, the real router): the facts, the key check, the
atomic claim (concurrent posts count once), the count, and an expired fact read as absent —
as on SQLite (tests/feedback/test_feedback.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from tier_router.quality.facts import Fact

from tests.feedback.support import (
    API_KEYS,
    KEYS,
    WINDOW_DAYS,
    StoreView,
    chat,
    counted,
    dynamodb_view,
    error_of,
    expected,
    post,
    rules,
)
from tests.support.answer_script import Answer, AnswerStack, answer_stack
from tests.support.moto_process import moto_process
from tests.support.stack import dynamodb_url

pytestmark = pytest.mark.integration
ALICE, BOB = KEYS["alice"], KEYS["bob"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AnswerStack, StoreView]]:
    with moto_process() as moto:
        store = dynamodb_url(moto)
        env = {"TIER_ROUTER_API_KEYS": API_KEYS}
        with answer_stack(tmp_path_factory.mktemp("feedback-ddb"), rules, store, env=env) as s:
            s.app.script("ok", cheap=[Answer("fine")], mid=[Answer("fine")], good=[Answer("fine")])
            yield s, dynamodb_view(store, moto.endpoint)


def test_feedback_on_dynamodb_counts_once_for_its_own_key(stack: tuple[AnswerStack, StoreView]) -> None:
    s, view = stack
    requests = [chat(s.router.url, ALICE, "ok", user=f"ddb-{i}") for i in range(4)]
    for request in requests:
        assert view.wait_for_fact(request.request_id) == {"key": "alice", **request.dims(), "open": 1}
    assert post(s.router.url, BOB, {"request_id": requests[0].request_id, "score": 1}).status_code == 404
    before = view.feedback()

    with ThreadPoolExecutor(16) as pool:
        futures = [
            (
                r.request_id,
                pool.submit(post, s.router.url, ALICE, {"request_id": r.request_id, "label": "good"}),
            )
            for r in requests
            for _ in range(4)
        ]
        statuses = [(rid, future.result().status_code) for rid, future in futures]

    for request in requests:
        assert sorted(status for rid, status in statuses if rid == request.request_id) == [200, 409, 409, 409]
    total: dict[tuple[str, str], tuple[int, int]] = {}
    for request in requests:
        for slot, (n, m) in expected(request, 1000).items():
            had = total.get(slot, (0, 0))
            total[slot] = (had[0] + n, had[1] + m)
    assert counted(before, view.feedback()) == total


def test_an_expired_fact_on_dynamodb_is_not_found(stack: tuple[AnswerStack, StoreView]) -> None:
    s, view = stack
    fact = Fact(key="alice", tier="budget", rule="short", model="cheap", arm="exp/control")
    view.plant("ddb-expired", fact, expires_at=time.time() - 1)  # TTL deletes it late: reads skip it
    view.plant("ddb-live", fact, expires_at=time.time() + WINDOW_DAYS * 86_400)
    before = view.feedback()

    expired = post(s.router.url, ALICE, {"request_id": "ddb-expired", "score": 0.5})
    live = post(s.router.url, ALICE, {"request_id": "ddb-live", "score": 0.5})

    assert expired.status_code == 404
    assert error_of(expired)["code"] == "request_not_found"
    assert live.status_code == 200
    assert counted(before, view.feedback()) == {(d, v): (1, 500) for d, v in fact.dims().items()}
