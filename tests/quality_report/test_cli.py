"""`tier-router quality` (text and --json) and `tier-router status --json` on a SQLite store
file holding what the router writes: quality counts and the spend ledger."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from tier_router.cli import main
from tier_router.quality import counts
from tier_router.quality.report import days_back
from tier_router.quality.sample import Verdict
from tier_router.spend.counters import SpendLedger
from tier_router.spend.results import RequestResult
from tier_router.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "rules" / "local-demo.yaml"
JUDGED = {"tier": "budget", "rule": "default", "model": "small"}


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    """The demo rules with a quality block: premium is the reference, large the judge."""
    rules = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    rules["quality"] = {"sample": 0.05, "reference": "premium", "judge": {"model": "large"}}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


def write_state(path: Path) -> None:
    """Today: 3 wins and a loss on budget/default (saving 1,000 µ$ each), 8 requests there;
    yesterday: 2 losses (saving 500 each) and 2 requests."""

    async def write() -> None:
        store = SQLiteStore(path)
        ledger = SpendLedger(store)
        today = ledger.today_key()
        yesterday = days_back(today, 2)[0]
        for day, verdicts, saved, requests in (
            (today, [Verdict.WIN] * 3 + [Verdict.LOSS], 1000, 8),
            (yesterday, [Verdict.LOSS] * 2, 500, 2),
        ):
            for verdict in verdicts:
                deltas = counts.verdict_deltas(JUDGED, verdict, 0.5, 0.5, saved)
                await store.add(counts.item_key(day), {**deltas, "judge_cost": 100})
            for _ in range(requests):
                names = {"tier": "budget", "model": "small", "rule": "default"}
                result = RequestResult(cost=7, key=None, arm=None, **names)
                await ledger.record(day, cost=7, result=result, router_key=None, **names)
        await store.aclose()

    asyncio.run(write())


def test_quality_json_and_text(tmp_path: Path, rules_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_state(tmp_path / "state.db")
    store_url = f"sqlite:///{tmp_path}/state.db"

    assert main(["quality", "--rules", str(rules_path), "--store", store_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reference"] == "premium"
    assert (data["judged"], data["judge_cost_micro_usd"]) == (4, 400)
    budget = data["tier"]["budget"]
    assert (budget["samples"], budget["wins"], budget["losses"], budget["requests"]) == (4, 3, 1, 8)
    assert budget["saved_estimate_micro_usd"] == 8000
    assert data["rule"]["default"] == budget

    assert main(["quality", "--rules", str(rules_path), "--store", store_url, "--days", "2", "--json"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert len(two["days"]) == 2
    budget = two["tier"]["budget"]
    assert (budget["samples"], budget["losses"], budget["requests"]) == (6, 3, 10)
    assert budget["saved_estimate_micro_usd"] == 5000 // 6 * 10  # (4×1000 + 2×500) / 6 = 833 µ$ each

    assert main(["quality", "--rules", str(rules_path), "--store", store_url]) == 0
    text = capsys.readouterr().out
    assert "judged    4 (0 failed, 0 skipped), judging cost $0.000400" in text
    row = next(line for line in text.splitlines() if line.startswith("  budget"))
    expected = "budget 4 3/0/1 25.0% [5%-70%] 0.50 0.50 0 - 8 0.008000"  # 1 of 4 lost: Wilson .046-.699
    assert row.split() == expected.split()


def test_status_json_carries_the_same_quality(
    tmp_path: Path, rules_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_state(tmp_path / "state.db")
    store_url = f"sqlite:///{tmp_path}/state.db"
    assert main(["quality", "--rules", str(rules_path), "--store", store_url, "--json"]) == 0
    quality = json.loads(capsys.readouterr().out)

    assert main(["status", "--rules", str(rules_path), "--store", store_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["quality"] == quality


def test_an_empty_store_and_bad_arguments(
    tmp_path: Path, rules_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_url = f"sqlite:///{tmp_path}/empty.db"
    assert main(["quality", "--rules", str(rules_path), "--store", store_url]) == 0
    assert "nothing judged and no feedback in these days" in capsys.readouterr().out

    assert main(["quality", "--rules", str(rules_path), "--store", store_url, "--days", "0"]) == 2
    assert "--days must be 1..366" in capsys.readouterr().err
    assert main(["quality", "--rules", str(tmp_path / "missing.yaml"), "--store", store_url]) == 1
    assert main(["quality", "--rules", str(rules_path), "--store", "nope"]) == 1
    assert "cannot read the state store nope" in capsys.readouterr().err
