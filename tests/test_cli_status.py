"""`tier-router status` reads today's spend and breaker states from the store the router wrote."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tier_router.app import create_app
from tier_router.cli import main
from tier_router.settings import Settings

from tests.support.demo import unjudged_demo
from tests.support.router_app import asgi_client

ROOT = Path(__file__).parent.parent
DEMO = unjudged_demo()


async def serve_two_requests(store_url: str) -> list[float]:
    app = create_app(Settings(rules_path=DEMO, store_url=store_url, api_keys=("team-a=rk-1",)))
    costs = []
    async with asgi_client(app, headers={"authorization": "Bearer rk-1"}) as client:
        for prompt in ("hi", "Why is the sky blue?"):
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "auto", "messages": [{"role": "user", "content": prompt}]},
            )
            assert response.status_code == 200
            costs.append(float(response.headers["x-router-cost-usd"]))
    await app.state.gateway.store.aclose()
    return costs


def test_status_shows_spend_by_tier_model_key_and_breakers(tmp_path: Path, capsys) -> None:
    store_url = f"sqlite:///{tmp_path}/state.db"
    costs = asyncio.run(serve_two_requests(store_url))
    capsys.readouterr()

    assert main(["status", "--rules", str(DEMO), "--store", store_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    spend = data["spend"]
    assert spend["requests"] == 2
    assert float(spend["total_usd"]) == pytest.approx(sum(costs))
    assert set(spend["by_tier"]) == {"budget", "premium"}
    assert set(spend["by_model"]) == {"small", "large"}
    assert list(spend["by_key"]) == ["team-a"]
    assert "rk-1" not in json.dumps(data)
    assert data["breakers"]["large"] == {"provider": "closed", "model": "closed"}

    assert main(["status", "--rules", str(DEMO), "--store", store_url]) == 0
    text = capsys.readouterr().out
    assert "by key" in text
    assert "team-a" in text
    assert "over 2 requests" in text


def test_status_shows_results_per_tier_rule_model_and_key(tmp_path: Path, capsys) -> None:
    store_url = f"sqlite:///{tmp_path}/state.db"
    asyncio.run(serve_two_requests(store_url))
    capsys.readouterr()

    assert main(["status", "--rules", str(DEMO), "--store", store_url, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["spend"]["results"]
    assert set(results["tier"]) == {"budget", "premium"}
    for dim in ("tier", "model"):
        for row in results[dim].values():
            assert row["requests"] == 1
            assert row["success_rate"] == 1.0
            assert row["error_rate"] == 0.0
            assert row["escalation_rate"] == 0.0
            assert row["avg_latency_ms"] >= 0
            assert row["cost_per_success_usd"] == row["cost_usd"]
    assert results["key"]["team-a"]["requests"] == 2
    assert results["arm"] == {}

    assert main(["status", "--rules", str(DEMO), "--store", store_url]) == 0
    text = capsys.readouterr().out
    head = next(line for line in text.splitlines() if line.startswith("by tier"))
    assert head.split()[2:] == [
        "requests",
        "cost",
        "$",
        "avg",
        "ms",
        "errors",
        "escal.",
        "success",
        "$/success",
    ]
    assert max(len(line) for line in text.splitlines() if not line.startswith("budget")) <= 100
    assert "100.0%" in text


def test_status_reads_a_day_item_written_before_results(tmp_path: Path, capsys) -> None:
    """An item of the old shape (costs only): the status still reports it, its results with
    the costs and no counts."""
    from tier_router.admission import SpendControls
    from tier_router.routing.loader import load_rules
    from tier_router.store.sqlite import SQLiteStore

    async def write_old_item() -> None:
        store = SQLiteStore(tmp_path / "state.db")
        ledger = SpendControls(store, load_rules(DEMO)).ledger
        old = {"total": 700, "requests": 3, "cache_hits": 1, "tier.budget": 200, "tier.premium": 500}
        old |= {"model.small": 200, "model.large": 500, "rule.default": 700, "key.team-a": 700}
        await store.put(ledger.item_keys(ledger.today_key())[0], old)
        await store.aclose()

    asyncio.run(write_old_item())
    store_url = f"sqlite:///{tmp_path}/state.db"
    assert main(["status", "--rules", str(DEMO), "--store", store_url, "--json"]) == 0
    spend = json.loads(capsys.readouterr().out)["spend"]
    assert (spend["total_usd"], spend["requests"], spend["cache_hits"]) == ("0.000700", 3, 1)
    assert spend["by_tier"] == {"premium": "0.000500", "budget": "0.000200"}
    assert spend["results"]["tier"]["premium"] == {
        "requests": 0,
        "cost_usd": "0.000500",
        "avg_latency_ms": None,
        "error_rate": None,
        "escalation_rate": None,
        "success_rate": None,
        "cost_per_success_usd": None,
    }
    assert main(["status", "--rules", str(DEMO), "--store", store_url]) == 0
    text = capsys.readouterr().out
    premium = next(line for line in text.splitlines() if line.strip().startswith("premium"))
    assert premium.split() == ["premium", "0", "0.000500", "-", "-", "-", "-", "-"]
