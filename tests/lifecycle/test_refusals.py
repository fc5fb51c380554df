"""Issue 12, "Done when" 2: every refusal — 400, 401, 403, 404, 413, 415, 429 (and 405) —
answered by the real router (`tier-router serve`, EMF on) carries an `x-router-request-id`
that no other response has, and the access log holds exactly one line with that id, the
status the client got, an outcome, and the EMF `Errors` metric = 1. Refusals before routing
are not billed: the ledger does not move.

All refusals are sent once by a module fixture (one router process); each case is then
checked by its own test, so a failure names the status that broke.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.agreement import quiesce
from tests.support.clients import wait_until
from tests.support.router_process import REQUEST_ID, Ledger, Router, running_router
from tests.support.stack import (
    PROVIDER_KEY,
    PROVIDER_KEY_ENV,
    ROUTER_KEY,
    Upstream,
    rules_for,
    sqlite_url,
    write_keys_file,
)

pytestmark = pytest.mark.integration

MAX_BODY = 4096
KEYS = {
    "alt-only": ("rk-lifecycle-alt-only", {"tiers": ["alt"]}),
    "tiny-tokens": ("rk-lifecycle-tiny-tokens", {}),
    "broke": ("rk-lifecycle-broke", {}),
}
CHAT = "/v1/chat/completions"


def secret(name: str) -> str:
    return KEYS[name][0]


def body(text: str = "Hello", model: str = "auto", **extra: Any) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}], **extra}).encode()


@dataclass(frozen=True)
class Refusal:
    name: str
    status: int
    method: str = "POST"
    path: str = CHAT
    content: bytes | None = None
    key: str | None = ROUTER_KEY
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)
    chunked: bool = False  # send the body without a content-length
    before_routing: bool = True


def _chunks(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), 1024):
        yield data[i : i + 1024]


REFUSALS = [
    Refusal("invalid-json", 400, content=b'{"model": "auto", "messages": ['),
    Refusal("invalid-utf8", 400, content=b'{"model": "auto", "messages": "\xff\xfe"}'),
    Refusal("not-an-object", 400, content=b"[1, 2, 3]"),
    Refusal("invalid-params", 400, content=json.dumps({"model": "auto", "messages": "hi"}).encode()),
    Refusal("explain-invalid-json", 400, path="/v1/route/explain", content=b"{nope"),
    Refusal("no-key", 401, content=body(), key=None),
    Refusal("status-no-key", 401, method="GET", path="/v1/router/status", key=None),
    Refusal("bad-key", 401, content=body(), key="rk-not-a-key"),
    Refusal("tier-not-allowed", 403, content=body(model="model-a"), key=secret("alt-only")),
    Refusal("unknown-model", 404, content=body(model="gpt-9-ultra")),
    Refusal("unknown-path", 404, method="GET", path="/v1/no-such-thing"),
    Refusal("unknown-post-path", 404, path="/v2/chat/completions", content=body()),
    Refusal("method-not-allowed", 405, method="GET", path=CHAT),
    Refusal("too-large-declared", 413, content=body("x" * 2 * MAX_BODY)),
    Refusal("too-large-chunked", 413, content=body("y" * 2 * MAX_BODY), chunked=True),
    Refusal("not-json", 415, content=b"model=auto", headers=(("content-type", "text/plain"),)),
    Refusal(
        "rate-limited", 429, content=body("Count my tokens"), key=secret("tiny-tokens"), before_routing=False
    ),
    Refusal("budget-cap", 429, content=body("Spend my money"), key=secret("broke"), before_routing=False),
]


@dataclass
class Answer:
    refusal: Refusal
    status: int
    request_id: str | None
    lines: list[dict[str, Any]]


@pytest.fixture(scope="module")
def router(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    workdir: Path = tmp_path_factory.mktemp("refusals")
    rules = rules_for(
        upstream.url,
        limits={"keys": {"tiny-tokens": {"tokens_per_minute": 1}}},
        budgets={"daily_usd": 100, "key_daily_usd": {"broke": 0}},
    )
    env = {
        PROVIDER_KEY_ENV: PROVIDER_KEY,
        "TIER_ROUTER_EMF": "1",
        "TIER_ROUTER_MAX_BODY_BYTES": str(MAX_BODY),
        "TIER_ROUTER_KEYS_FILE": str(write_keys_file(workdir / "keys.yaml", KEYS)),
    }
    with running_router(workdir, rules, key=ROUTER_KEY, store_url=sqlite_url(workdir), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def answers(router: Router) -> tuple[dict[str, Answer], Ledger, Ledger]:
    """Send every refusal once; the access log and ledger once they are quiet again."""
    before = quiesce(router)
    sent: list[tuple[Refusal, httpx.Response]] = []
    with httpx.Client(base_url=router.url, timeout=10) as http:
        for refusal in REFUSALS:
            headers = dict(refusal.headers)
            if refusal.key is not None:
                headers["authorization"] = f"Bearer {refusal.key}"
            content: Any = refusal.content
            if refusal.chunked and content is not None:
                content = _chunks(content)
            response = http.request(refusal.method, refusal.path, content=content, headers=headers)
            sent.append((refusal, response))
    after = quiesce(router)
    lines = router.request_lines()[before.start :]
    out = {}
    for refusal, response in sent:
        rid = response.headers.get(REQUEST_ID)
        mine = [line for line in lines if rid is not None and line.get("request_id") == rid]
        out[refusal.name] = Answer(refusal, response.status_code, rid, mine)
    return out, before.base, after.base


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: f"{r.status}-{r.name}")
def test_refusal_has_request_id_and_exactly_one_line(refusal: Refusal, answers: Any) -> None:
    answer: Answer = answers[0][refusal.name]
    assert answer.status == refusal.status
    assert answer.request_id, f"a {refusal.status} without {REQUEST_ID}"
    assert len(answer.lines) == 1, f"{len(answer.lines)} access-log lines with id {answer.request_id}"
    line = answer.lines[0]
    assert line.get("status") == refusal.status
    assert isinstance(line.get("outcome"), str)
    assert line["outcome"]
    assert line["outcome"] != "ok"
    assert line.get("Errors") == 1, f"EMF Errors is {line.get('Errors')!r}"
    assert line.get("Requests") == 1
    assert "_aws" in line


def test_request_ids_are_unique(answers: Any) -> None:
    ids = Counter(a.request_id for a in answers[0].values())
    assert None not in ids
    assert all(n == 1 for n in ids.values()), ids


def test_refusals_before_routing_are_not_billed(answers: Any) -> None:
    _, before, after = answers
    admitted = [r for r in REFUSALS if not r.before_routing]
    assert after.total == before.total
    assert after.budget_spent == before.budget_spent
    # 429s are refused at admission: whether they count as requests is the ledger's choice,
    # but never more than once each, and never anything else.
    assert before.requests <= after.requests <= before.requests + len(admitted)


def test_every_line_of_the_run_belongs_to_a_response(router: Router, answers: Any) -> None:
    """No stray lines: the only request lines are the refusals' and the test's own polls."""
    ids = {a.request_id for a in answers[0].values()}
    stray = [
        line
        for line in router.request_lines()
        if line.get("request_id") not in ids and line.get("request_id") not in router.own_ids
    ]
    assert not stray, stray[:3]


def test_the_tests_own_requests_got_an_id_and_one_line_each(router: Router, answers: Any) -> None:
    """Health checks and status polls are HTTP requests too: each answer had an id, and each
    id is on exactly one line."""
    assert router.own_unidentified == 0, f"{router.own_unidentified} responses without {REQUEST_ID}"
    own = set(router.own_ids)

    def counts() -> Counter[Any]:
        return Counter(line.get("request_id") for line in router.request_lines())

    with contextlib.suppress(TimeoutError):  # the last poll's line may still be on its way
        wait_until(lambda: all(counts()[rid] for rid in own), 5.0, "a line for every own request")
    seen = counts()
    wrong = {rid: seen[rid] for rid in own if seen[rid] != 1}
    assert not wrong, f"ids with other than one line: {wrong}"
    assert len(router.own_ids) >= 3  # start-up health check, two status reads


def test_refusal_lines_carry_the_cost_fields(answers: Any) -> None:
    """The promised line shape holds for refusals too: `cost_micro_usd` (int or null — a
    refusal costs nothing) and `cost_estimated` (a bool, false)."""
    wrong = []
    for answer in answers[0].values():
        for line in answer.lines:
            cost, flag = line.get("cost_micro_usd", "absent"), line.get("cost_estimated", "absent")
            if cost not in (None, 0) or flag is not False:
                wrong.append(f"{answer.refusal.name}: cost_micro_usd={cost!r} cost_estimated={flag!r}")
    assert not wrong, "\n".join(wrong)
