"""`/v1/router/status` → `quality` on the real router (`tier-router serve`, SQLite store,
logging on) with the openai SDK: present and empty before anything is judged; once quality
counts are in the store (written as the judge writes them), today's rows with the ledger's
requests of the router's own traffic — the same object `tier-router quality --json` prints."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from tier_router.cli import main
from tier_router.quality import counts
from tier_router.quality.sample import Verdict
from tier_router.store.sqlite import SQLiteStore

from tests.support.router_process import Router, running_router
from tests.support.stack import sqlite_url

ROUTER_KEY = "rk-quality-report-test"
RULES: dict[str, Any] = {
    "version": 1,
    "providers": {
        "fast": {"kind": "mock", "base_url": "mock://fast"},
        "smart": {"kind": "mock", "base_url": "mock://smart"},
    },
    "models": {
        "small": {"provider": "fast", "id": "mock-small", "price": {"input": 0.1, "output": 0.4}},
        "large": {"provider": "smart", "id": "mock-large", "price": {"input": 3.0, "output": 15.0}},
    },
    "tiers": {"budget": ["small"], "premium": ["large"]},
    "default_tier": "premium",
    "rules": [{"name": "short", "tier": "budget", "when": {"last_user_tokens": {"max": 20}}}],
    # judging configured, nothing sampled: the test writes the judgements itself
    "quality": {"sample": 0, "reference": "premium", "judge": {"model": "large"}},
}
JUDGED = {"tier": "budget", "rule": "short", "model": "small"}


def status(router: Router) -> dict[str, Any]:
    response = router.get("/v1/router/status")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def until_requests(router: Router, n: int, timeout: float = 10.0) -> dict[str, Any]:
    """The status once the ledger counts `n` requests (settling may run after the response)."""
    deadline = time.monotonic() + timeout
    while True:
        data = status(router)
        if data["spend"]["requests"] >= n or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def write_judgements(path: Path, day: str) -> None:
    async def write() -> None:
        store = SQLiteStore(path)
        for verdict in (Verdict.WIN, Verdict.WIN, Verdict.WIN, Verdict.LOSS):
            deltas = counts.verdict_deltas(JUDGED, verdict, 0.8, 0.9, 2000)
            await store.add(counts.item_key(day), {**deltas, "judge_cost": 200})
        await store.add(counts.item_key(day), counts.feedback_deltas(JUDGED, 0.8))
        await store.aclose()

    asyncio.run(write())


@pytest.mark.integration
def test_status_quality_through_the_real_router(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_url = sqlite_url(tmp_path)
    with running_router(tmp_path, RULES, key=ROUTER_KEY, store_url=store_url) as router:
        empty = status(router)["quality"]
        assert empty["judged"] == 0
        assert empty["reference"] == "premium"
        assert {dim: empty[dim] for dim in counts.DIMENSIONS} == {
            "tier": {},
            "rule": {},
            "model": {},
            "arm": {},
        }
        [day] = empty["days"]

        with openai.OpenAI(base_url=router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=30) as sdk:
            for _ in range(3):
                answer = sdk.chat.completions.with_raw_response.create(
                    model="auto", messages=[{"role": "user", "content": "hi"}]
                )
                assert answer.headers["x-router-tier"] == "budget"
        assert until_requests(router, 3)["spend"]["requests"] == 3
        write_judgements(tmp_path / "state.db", day)

        quality = status(router)["quality"]

    assert (quality["days"], quality["judged"], quality["judge_cost_usd"]) == ([day], 4, "0.000800")
    budget = quality["tier"]["budget"]
    assert (budget["samples"], budget["wins"], budget["losses"], budget["loss_rate"]) == (4, 3, 1, 0.25)
    assert (budget["feedback"], budget["feedback_score"]) == (1, 0.8)
    assert budget["requests"] == 3  # the router's own traffic, from its ledger
    assert budget["saved_estimate_micro_usd"] == 2000 * 3
    assert quality["rule"]["short"] == budget
    assert "premium" not in quality["tier"]  # answered nothing, judged nothing

    assert main(["quality", "--rules", str(tmp_path / "router.yaml"), "--store", store_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == quality
