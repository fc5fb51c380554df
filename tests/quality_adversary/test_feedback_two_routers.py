"""Adversary: feedback counted once when two router processes share one SQLite file (two
workers of one host, a blue/green switch): the facts one wrote are read by the other, and
posts racing through both on the same requests are one 200 and the rest 409, counted once.
A key's feedback line keeps control characters inside one JSON line."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.feedback.support import (
    API_KEYS,
    KEYS,
    chat,
    counted,
    expected,
    post,
    rules,
    sqlite_view,
)
from tests.support.answer_script import PROVIDER_KEY_ENV, Answer, AnswerScript
from tests.support.loopback import run_uvicorn_in_thread
from tests.support.router_process import Router, running_router
from tests.support.stack import PROVIDER_KEY, ROUTER_KEY, sqlite_url, store_env

pytestmark = pytest.mark.integration
ALICE, BOB = KEYS["alice"], KEYS["bob"]


@contextlib.contextmanager
def two_routers(workdir: Path) -> Iterator[tuple[AnswerScript, Router, Router, str]]:
    app = AnswerScript()
    with run_uvicorn_in_thread(app) as url:
        store = sqlite_url(workdir)
        env = {PROVIDER_KEY_ENV: PROVIDER_KEY, **store_env(store), "TIER_ROUTER_API_KEYS": API_KEYS}
        (workdir / "a").mkdir()
        (workdir / "b").mkdir()
        with (
            running_router(workdir / "a", rules(url), key=ROUTER_KEY, store_url=store, env=env) as a,
            running_router(workdir / "b", rules(url), key=ROUTER_KEY, store_url=store, env=env) as b,
        ):
            yield app, a, b, store


def test_posts_racing_through_two_routers_on_one_sqlite_file_count_once(tmp_path: Path) -> None:
    with two_routers(tmp_path) as (app, a, b, store):
        app.script("ok", cheap=[Answer("fine")] * 9, mid=[Answer("fine")] * 9, good=[Answer("fine")] * 9)
        view = sqlite_view(store)
        requests = [chat((a, b)[i % 2].url, ALICE, "ok", user=f"two-{i}") for i in range(4)]
        for request in requests:
            view.wait_for_fact(request.request_id)
        before = view.feedback()
        with ThreadPoolExecutor(32) as pool:
            posts = [
                (r, pool.submit(post, (a, b)[j % 2].url, key, {"request_id": r.request_id, "score": 0.25}))
                for r in requests
                for j, key in enumerate([ALICE] * 8 + [BOB] * 2)
            ]
            statuses = [(r.request_id, f.result().status_code) for r, f in posts]
        after = view.feedback()
    for request in requests:
        mine = sorted(status for rid, status in statuses if rid == request.request_id)
        assert mine == [200] + [404] * 2 + [409] * 7  # bob: not found, whichever router he asks
    total: dict[tuple[str, str], tuple[int, int]] = {}
    for request in requests:
        for slot, (n, m) in expected(request, 250).items():
            total[slot] = (total.get(slot, (0, 0))[0] + n, total.get(slot, (0, 0))[1] + m)
    assert counted(before, after) == total


def test_a_comment_with_control_characters_stays_one_json_line(tmp_path: Path) -> None:
    comment = "line1\nline2\r\x00\x1b[31mred\x1b[0m\u2028end"
    with two_routers(tmp_path) as (app, a, b, store):
        app.script("ok", cheap=[Answer("fine")], mid=[Answer("fine")], good=[Answer("fine")])
        request = chat(a.url, ALICE, "ok")
        sqlite_view(store).wait_for_fact(request.request_id)
        response = post(b.url, ALICE, {"request_id": request.request_id, "label": "bad", "comment": comment})
        assert response.status_code == 200
        b.stop()
        raw = b.stdout_path.read_bytes()
    lines = [json.loads(line) for line in raw.split(b"\n") if b'"type":"feedback"' in line.replace(b" ", b"")]
    assert [line["comment"] for line in lines] == [comment]
    assert b"\x1b" not in raw  # no raw terminal escape reaches a terminal tailing the log
