"""`tier-router status` and /v1/router/status after a mid-day `budgets.shards` change: two
routers (the real app, the default SQLite store) with 1 and then 4 shards serve the same day;
both counted on the day's pinned layout, and both readers sum it — spend and budget alike."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tier_router.app import create_app
from tier_router.cli import main
from tier_router.settings import Settings
from tier_router.spend.counters import day_key
from tier_router.store.sqlite import SQLiteStore

from tests.support.demo import unjudged_demo
from tests.support.router_app import asgi_client


def rules_with(shards: int) -> Path:
    path = unjudged_demo()  # a fresh copy each call
    rules = yaml.safe_load(path.read_text())
    rules["budgets"] = {"daily_usd": 5, "shards": shards}
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


async def serve(rules: Path, store_url: str, prompts: list[str]) -> tuple[list[float], dict[str, Any]]:
    """Requests through a router process of its own (settled inline: `background_settle` off);
    returns their costs and its status endpoint's answer."""
    app = create_app(Settings(rules_path=rules, store_url=store_url, api_keys=("team-a=rk-1",)))
    costs = []
    async with asgi_client(app, headers={"authorization": "Bearer rk-1"}) as client:
        for prompt in prompts:
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "auto", "messages": [{"role": "user", "content": prompt}]},
            )
            assert response.status_code == 200
            costs.append(float(response.headers["x-router-cost-usd"]))
        status = (await client.get("/v1/router/status")).json()
    await app.state.gateway.store.aclose()
    return costs, status


def test_status_readers_sum_the_pinned_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_url = f"sqlite:///{tmp_path}/state.db"
    before, _ = asyncio.run(serve(rules_with(1), store_url, ["hi", "Why is the sky blue?"]))
    four = rules_with(4)
    after, endpoint = asyncio.run(serve(four, store_url, ["And the sea?"]))
    total = sum(before) + sum(after)

    capsys.readouterr()
    assert main(["status", "--rules", str(four), "--store", store_url, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    for data in (cli, endpoint):
        assert data["spend"]["requests"] == 3
        assert float(data["spend"]["total_usd"]) == pytest.approx(total)
        assert float(data["budgets"]["global"]["spent_usd"]) == pytest.approx(total)
        assert float(data["budgets"]["global"]["committed_usd"]) == pytest.approx(total)

    async def items() -> dict[str, Any]:
        store = SQLiteStore(tmp_path / "state.db")
        day = day_key(time.time(), 0)
        found = await store.get_many([f"spend:{day}", *(f"spend:{day}#{i}" for i in range(4))])
        await store.aclose()
        return found

    assert [key.rpartition(":")[2].count("#") for key in asyncio.run(items())] == [0]  # one layout
