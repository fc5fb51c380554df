"""Issue 12, "Done when" 1, the Mangum half: the Lambda handler (`tier_router.lambda_entry`)
in its own interpreter, built at import from the environment as Lambda's init phase does
(AWS_LAMBDA_FUNCTION_NAME set: EMF on, auth required), invoked with Function URL events —
plain and `stream: true` chat completions, an upstream failure and the refusals.

Every invocation's response carries `x-router-request-id`; stdout holds exactly one request
line per invocation, with that id and the status returned; the ledger and the budget, read by
invoking `/v1/router/status` through the handler before and after, agree with the lines; the
cost header and the streamed usage chunk agree with their lines. On Lambda, settling happens
before the invocation returns: no polling.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import cost_of_usage, usage_from_sse
from tests.support.router_process import REQUEST_ID, Ledger, base_env, micro
from tests.support.stack import (
    PROVIDER_KEY,
    PROVIDER_KEY_ENV,
    ROUTER_KEY,
    Upstream,
    dynamodb_url,
    rules_for,
    sqlite_url,
    store_env,
    write_keys_file,
)

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parent.parent
TEMPLATE = json.loads((TESTS / "lambda_events" / "function_url_chat_base64.json").read_text())
CHILD = TESTS / "support" / "lambda_child.py"
ALT_ONLY_KEY = "rk-lifecycle-alt-only"
MAX_BODY = 4096


def event(
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = ROUTER_KEY,
    content_type: str | None = "application/json",
) -> dict[str, Any]:
    """A Function URL event (payload 2.0) like tests/lambda_events' example, base64 body."""
    out = copy.deepcopy(TEMPLATE)
    out["rawPath"] = path
    out["requestContext"]["http"]["method"] = method
    out["requestContext"]["http"]["path"] = path
    out["requestContext"]["requestId"] = str(uuid.uuid4())
    headers = {k: v for k, v in out["headers"].items() if k != "content-type"}
    if content_type is not None:
        headers["content-type"] = content_type
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    out["headers"] = headers
    if body is None:
        out.pop("body", None)
        out["isBase64Encoded"] = False
    else:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        out["body"] = base64.b64encode(raw).decode()
        out["isBase64Encoded"] = True
    return out


def chat(text: str, model: str = "auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


USAGE = {"stream": True, "stream_options": {"include_usage": True}}


@dataclass
class Case:
    name: str
    event: dict[str, Any]
    status: int
    admitted: bool = False  # a chat completion that got past auth, body and routing
    chat: bool = True


def cases() -> list[Case]:
    too_big = chat("x" * (2 * MAX_BODY))
    return [
        Case("status-before", event("GET", "/v1/router/status"), 200, chat=False),
        Case("plain-auto", event("POST", "/v1/chat/completions", chat("Why is the sky blue?")), 200, True),
        Case("plain-model", event("POST", "/v1/chat/completions", chat("Hi there", "model-a")), 200, True),
        Case("plain-tier", event("POST", "/v1/chat/completions", chat("Hello", "alt")), 200, True),
        Case("stream-usage", event("POST", "/v1/chat/completions", chat("Stream me", **USAGE)), 200, True),
        Case(
            "stream-usage-b",
            event("POST", "/v1/chat/completions", chat("Stream b", "model-b", **USAGE)),
            200,
            True,
        ),
        Case("stream-plain", event("POST", "/v1/chat/completions", chat("No usage", stream=True)), 200, True),
        Case(
            "upstream-fails",
            event("POST", "/v1/chat/completions", chat("Break [status=500]", "alt")),
            502,
            True,
        ),
        Case("bad-json", event("POST", "/v1/chat/completions", b'{"model": "auto", "messages": ['), 400),
        Case(
            "bad-params",
            event("POST", "/v1/chat/completions", {"model": "auto", "messages": "not a list"}),
            400,
        ),
        Case("no-key", event("POST", "/v1/chat/completions", chat("Who am I"), key=None), 401),
        Case("bad-key", event("POST", "/v1/chat/completions", chat("Who am I"), key="rk-wrong"), 401),
        Case(
            "tier-not-allowed",
            event("POST", "/v1/chat/completions", chat("Not mine", "model-a"), key=ALT_ONLY_KEY),
            403,
        ),
        Case("unknown-model", event("POST", "/v1/chat/completions", chat("Who", "gpt-9")), 404),
        Case("unknown-path", event("GET", "/v1/nothing-here"), 404, chat=False),
        Case(
            "not-json",
            event("POST", "/v1/chat/completions", b"model=auto", content_type="text/plain"),
            415,
        ),
        Case("too-large", event("POST", "/v1/chat/completions", too_big), 413),
        Case("models", event("GET", "/v1/models"), 200, chat=False),
        Case("status-after", event("GET", "/v1/router/status"), 200, chat=False),
    ]


@dataclass
class Invocation:
    case: Case
    result: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in (self.result.get("headers") or {}).items()}

    @property
    def body(self) -> str:
        body = self.result.get("body") or ""
        return base64.b64decode(body).decode() if self.result.get("isBase64Encoded") else body


Invoked = tuple[list["Invocation"], list[dict[str, Any]]]


def invoke_all(workdir: Path, upstream: Upstream, store: str) -> Invoked:
    rules_path = workdir / "rules.yaml"
    rules_path.write_text(json.dumps(rules_for(upstream.url)))
    plan = cases()
    job, result_path = workdir / "job.json", workdir / "result.json"
    job.write_text(json.dumps({"events": [c.event for c in plan]}))
    env = base_env(
        {
            "TIER_ROUTER_RULES": str(rules_path),
            "TIER_ROUTER_STORE": store,
            "TIER_ROUTER_API_KEYS": ROUTER_KEY,
            "TIER_ROUTER_KEYS_FILE": str(
                write_keys_file(workdir / "keys.yaml", {"alt-only": (ALT_ONLY_KEY, {"tiers": ["alt"]})})
            ),
            "TIER_ROUTER_MAX_BODY_BYTES": str(MAX_BODY),
            "AWS_LAMBDA_FUNCTION_NAME": "tier-router-lifecycle",
            PROVIDER_KEY_ENV: PROVIDER_KEY,
            **store_env(store),
        }
    )
    done = subprocess.run(
        [sys.executable, str(CHILD), str(job), str(result_path)],
        env=env,
        cwd=workdir,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-4000:]
    results = json.loads(result_path.read_text())
    raised = [(c.name, r["raised"]) for c, r in zip(plan, results, strict=True) if "raised" in r]
    assert not raised, f"the handler raised: {raised}"
    lines = []
    for text in done.stdout.decode().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(text)
            if isinstance(record, dict) and record.get("event") == "request":
                lines.append(record)
    return [Invocation(c, r["result"]) for c, r in zip(plan, results, strict=True)], lines


@pytest.fixture(scope="module", params=["sqlite", "dynamodb"])
def invoked(
    request: pytest.FixtureRequest, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Invoked:
    """Every case, invoked once in one Lambda-like process per store backend."""
    workdir = tmp_path_factory.mktemp(f"lambda-{request.param}")
    if request.param == "dynamodb":
        store = dynamodb_url(request.getfixturevalue("moto"))
    else:
        store = sqlite_url(workdir)
    return invoke_all(workdir, upstream, store)


def test_every_invocation_got_its_status_and_a_request_id(invoked: Invoked) -> None:
    invocations, _ = invoked
    wrong = [(i.case.name, i.result.get("statusCode"), i.case.status) for i in invocations]
    wrong = [w for w in wrong if w[1] != w[2]]
    assert not wrong, f"(case, got, expected): {wrong}"
    missing = [i.case.name for i in invocations if not i.headers.get(REQUEST_ID)]
    assert not missing, f"responses without {REQUEST_ID}: {missing}"
    ids = Counter(i.headers[REQUEST_ID] for i in invocations)
    assert all(n == 1 for n in ids.values()), f"request ids reused: {ids}"


def test_one_access_log_line_per_invocation_with_emf(invoked: Invoked) -> None:
    invocations, lines = invoked
    assert len(lines) == len(invocations), (
        f"{len(invocations)} invocations, {len(lines)} request lines: "
        f"{[(line.get('request_id'), line.get('status')) for line in lines]}"
    )
    by_id = Counter(line.get("request_id") for line in lines)
    problems = []
    for inv in invocations:
        rid = inv.headers.get(REQUEST_ID)
        if by_id[rid] != 1:
            problems.append(f"{inv.case.name}: {by_id[rid]} lines with its id {rid}")
            continue
        line = next(line for line in lines if line.get("request_id") == rid)
        if line.get("status") != inv.case.status:
            problems.append(f"{inv.case.name}: line status {line.get('status')}, expected {inv.case.status}")
        if not isinstance(line.get("outcome"), str) or not line["outcome"]:
            problems.append(f"{inv.case.name}: outcome {line.get('outcome')!r}")
        if line.get("Errors") != (1 if inv.case.status >= 400 else 0) or "_aws" not in line:
            problems.append(f"{inv.case.name}: EMF Errors {line.get('Errors')!r} for {inv.case.status}")
    assert not problems, "\n".join(problems)


def test_ledger_budget_and_costs_agree_with_the_lines(invoked: Invoked) -> None:
    invocations, lines = invoked
    by_name = {i.case.name: i for i in invocations}
    before = Ledger.parse(json.loads(by_name["status-before"].body))
    after = Ledger.parse(json.loads(by_name["status-after"].body))
    line_of = {line.get("request_id"): line for line in lines}
    admitted = [i for i in invocations if i.case.admitted]
    admitted_lines = [line_of.get(i.headers.get(REQUEST_ID)) for i in admitted]
    assert all(admitted_lines), "admitted invocations without a line (see the line test)"
    costs = [line.get("cost_micro_usd") for line in admitted_lines if line]
    total = sum(c for c in costs if isinstance(c, int))
    problems = []
    if after.requests - before.requests != len(admitted):
        problems.append(f"ledger counted {after.requests - before.requests}, {len(admitted)} admitted")
    if after.total - before.total != total:
        problems.append(f"ledger cost {after.total - before.total} µ$ != sum of line costs {total} µ$")
    if after.budget_spent is None or before.budget_spent is None:
        problems.append("no global budget in the status")
    elif after.budget_spent - before.budget_spent != total:
        problems.append(f"budget spent {after.budget_spent - before.budget_spent} µ$ != {total} µ$")
    for inv in admitted:
        line = line_of[inv.headers.get(REQUEST_ID)]
        if inv.case.status == 200 and line.get("cost_estimated") is not False:
            problems.append(f"{inv.case.name}: cost_estimated {line.get('cost_estimated', 'absent')!r}")
        if inv.case.name.startswith("plain"):
            header = inv.headers.get("x-router-cost-usd")
            if header is None or micro(header) != line.get("cost_micro_usd"):
                problems.append(f"{inv.case.name}: header {header} vs line {line.get('cost_micro_usd')}")
        if inv.case.name.startswith("stream-usage"):
            body = inv.body
            usage_cost = cost_of_usage(usage_from_sse(body.splitlines()))
            if not body.rstrip().endswith("data: [DONE]"):
                problems.append(f"{inv.case.name}: the SSE body does not end with [DONE]")
            if usage_cost is None or usage_cost != line.get("cost_micro_usd"):
                cost = line.get("cost_micro_usd")
                problems.append(f"{inv.case.name}: usage cost {usage_cost} vs line {cost}")
    if total <= 0:
        problems.append("no admitted invocation cost anything: the check proves nothing")
    assert not problems, "\n".join(problems)
