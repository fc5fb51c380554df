"""`tier-router status` reads today's spend and breaker states from the store the router wrote."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tier_router.app import create_app
from tier_router.cli import main
from tier_router.settings import Settings

from tests.support.router_app import asgi_client

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "rules" / "local-demo.yaml"


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
