"""`tier-router status` on a table several regions share: each region's spend, budgets and
breakers, and their spend summed (every region's routers write only their own items)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from tier_router.app import create_app
from tier_router.cli import main
from tier_router.settings import Settings

from tests.support.demo import unjudged_demo
from tests.support.router_app import asgi_client


def shared_rules(tmp_path: Path) -> Path:
    rules = yaml.safe_load(unjudged_demo().read_text())
    rules["budgets"] = {"daily_usd": 300, "region_shares": {"us-east-1": 0.5, "eu-west-1": 0.3}}
    path = unjudged_demo().with_name(f"shared-{tmp_path.name}.yaml")
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


async def serve(rules: Path, store_url: str, region: str, prompts: list[str]) -> list[float]:
    settings = Settings(rules_path=rules, store_url=store_url, shared_store=True, region=region)
    app = create_app(settings)
    costs = []
    async with asgi_client(app) as client:
        for prompt in prompts:
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "auto", "messages": [{"role": "user", "content": prompt}]},
            )
            assert response.status_code == 200
            costs.append(float(response.headers["x-router-cost-usd"]))
    await app.state.gateway.store.aclose()
    return costs


def test_status_reads_every_region_and_sums_their_spend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = shared_rules(tmp_path)
    store_url = f"sqlite:///{tmp_path}/state.db"
    east = asyncio.run(serve(rules, store_url, "us-east-1", ["hi", "Why is the sky blue?"]))
    west = asyncio.run(serve(rules, store_url, "eu-west-1", ["hello"]))
    capsys.readouterr()
    monkeypatch.setenv("TIER_ROUTER_SHARED_STORE", "1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")

    assert main(["status", "--rules", str(rules), "--store", store_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data["regions"]) == ["eu-west-1", "us-east-1"]  # this one, then the shares'
    regions = data["regions"]
    assert regions["us-east-1"]["spend"]["requests"] == 2
    assert float(regions["us-east-1"]["spend"]["total_usd"]) == pytest.approx(sum(east))
    assert regions["eu-west-1"]["spend"]["requests"] == 1
    assert regions["us-east-1"]["budgets"]["global"]["cap_usd"] == "150.000000"  # the shares of $300
    assert regions["eu-west-1"]["budgets"]["global"]["cap_usd"] == "90.000000"
    assert data["spend"]["requests"] == 3
    assert float(data["spend"]["total_usd"]) == pytest.approx(sum(east) + sum(west))
    assert set(regions["eu-west-1"]["breakers"]) == set(regions["us-east-1"]["breakers"])

    assert main(["status", "--rules", str(rules), "--store", store_url]) == 0
    text = capsys.readouterr().out
    assert "== region us-east-1" in text
    assert "== all 2 regions" in text
    assert "over 3 requests" in text

    # A region without a share is refused (its caps are unknown).
    assert main(["status", "--rules", str(rules), "--store", store_url, "--regions", "ap-northeast-1"]) == 2
    assert "(ap-northeast-1) no share" in capsys.readouterr().err


def test_a_router_in_a_region_without_a_share_does_not_start(tmp_path: Path) -> None:
    settings = Settings(rules_path=shared_rules(tmp_path), store_url="memory://", region="sa-east-1")
    with pytest.raises(ValueError, match=r"\(sa-east-1\) no share"):
        create_app(settings)
