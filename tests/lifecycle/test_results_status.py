"""Issue 15: the real router (`tier-router serve`, SQLite store, access log on) reports results
per tier, rule, model and key in `/v1/router/status` — and they agree with its access log,
request for request: counts, costs, latency sums, errors and successes."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.router_process import micro, running_router
from tests.support.stack import PROVIDER_KEY, PROVIDER_KEY_ENV, ROUTER_KEY, Upstream, rules_for, sqlite_url

pytestmark = pytest.mark.integration

RULES_EXTRA = {
    "rules": [{"name": "short", "tier": "alt", "when": {"last_user_matches": {"pattern": "\\bshort\\b"}}}],
    "routing": {"max_attempts": 2},
}


def chat(url: str, text: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {ROUTER_KEY}"},
        json={"model": "auto", "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )


def expected_from_log(lines: list[dict[str, Any]]) -> dict[str, dict[str, list[int]]]:
    """What the ledger should say, worked out from the access log: per dimension value
    [requests, cost µ$, latency ms (each line's rounded), errors, successes]."""
    out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0, 0]))
    for line in lines:
        error = line["outcome"] in ("failed", "stream_interrupted", "error")
        success = line["outcome"] in ("ok", "cache_hit")
        for dim, name in (("tier", line.get("tier")), ("rule", line.get("rule")), ("key", line.get("key"))):
            if name:
                row = out[dim][name]
                for i, value in enumerate(
                    (1, line["cost_micro_usd"], round(line["latency_ms"]), error, success)
                ):
                    row[i] += int(value)
    return out


def test_status_results_agree_with_the_access_log(upstream: Upstream, tmp_path: Path) -> None:
    store = sqlite_url(tmp_path)
    rules = rules_for(upstream.url, **RULES_EXTRA)
    with running_router(
        tmp_path, rules, key=ROUTER_KEY, store_url=store, env={PROVIDER_KEY_ENV: PROVIDER_KEY}
    ) as router:
        sent = [
            chat(router.url, "a short one"),  # rule short -> tier alt (model-b)
            chat(router.url, "another short one"),
            chat(router.url, "hello there"),  # default -> tier main (model-a)
            chat(router.url, "hello [status=500]"),  # main: model-a and model-b fail: an error
        ]
        assert [r.status_code for r in sent[:3]] == [200, 200, 200]
        assert sent[3].status_code >= 500

        deadline = time.monotonic() + 15
        while True:  # settled (the ledger) and logged (the line is written after the settle)
            status = router.get("/v1/router/status").json()
            lines = [line for line in router.chat_lines() if line.get("path") == "/v1/chat/completions"]
            if status["spend"]["requests"] >= 4 and len(lines) >= 4:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.1)

    assert len(lines) == 4
    results = status["spend"]["results"]
    expected = expected_from_log(lines)
    for dim in ("tier", "rule", "key"):
        assert set(results[dim]) == set(expected[dim]), dim
        for name, (n, cost, latency, errors, successes) in expected[dim].items():
            row = results[dim][name]
            assert row["requests"] == n
            assert micro(row["cost_usd"]) == cost
            assert row["avg_latency_ms"] == round(latency / n, 1)
            assert row["error_rate"] == round(errors / n, 4)
            assert row["success_rate"] == round(successes / n, 4)
            assert row["escalation_rate"] == 0.0
    # the hand-checkable part: alt served both short requests, main one of its two
    assert results["tier"]["alt"]["success_rate"] == 1.0
    assert results["tier"]["main"]["error_rate"] == 0.5
    assert results["tier"]["main"]["success_rate"] == 0.5
    assert results["rule"]["short"]["requests"] == 2
    assert results["model"]["model-b"]["requests"] >= 2
    assert results["model"]["model-b"]["success_rate"] is not None
    assert results["key"][next(iter(results["key"]))]["requests"] == 4
