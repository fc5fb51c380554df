"""`tier-router labels`: judgement and feedback lines of a router log, exported as labels that
`quality.labels.read_labels` (what `calibrate` reads) accepts."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
from tier_router.cli import main
from tier_router.quality.export import BATCH, ExportStats, prompt_key, read_prompts
from tier_router.quality.labels import Label, read_labels
from tier_router.store.sqlite import SQLiteStore

from tests.support.stores import Counting

BODY_1 = {"model": "auto", "messages": [{"role": "user", "content": "Prove that √2 is irrational."}]}
BODY_2 = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
FEATURES_1 = {"chars": 29, "messages": 1, "last_user_tokens": 9}
FEATURES_2 = {"chars": 2, "messages": 1, "last_user_tokens": 1}
FEATURES_3 = {"chars": 400, "messages": 3, "last_user_tokens": 80}


def request_line(rid: str, tier: str, features: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": "request",
        "request_id": rid,
        "method": "POST",
        "path": "/v1/chat/completions",
        "outcome": "ok",
        "status": 200,
        "tier": tier,
        "rule": "default",
        "features": features,
        "cost_micro_usd": 40,
    }


def judgement(rid: str, scores: dict[str, float], features: dict[str, Any], **extra: Any) -> dict[str, Any]:
    verdict = "loss" if scores else None
    return {
        "type": "judgement",
        "request_id": rid,
        "tier": "budget",
        "reference": "premium",
        "rule": "default",
        "model": "small",
        "arm": None,
        "reference_model": "large",
        "judge_model": "judge",
        "verdict": verdict,
        "scores": scores,
        "orders": [],
        "cost_micro_usd": {"reference": 900, "judge": 300},
        "tokens": {},
        "features": features,
        "kept_prompt": True,
        "error": None,
        "skipped": None,
        **extra,
    }


def feedback(rid: str, score: Any, tier: str = "budget") -> dict[str, Any]:
    return {
        "type": "feedback",
        "request_id": rid,
        "key": "team-a",
        "tier": tier,
        "rule": "default",
        "model": "small",
        "arm": None,
        "score": score,
        "label": None,
        "comment": None,
    }


def write_log(path: Path, lines: list[Any]) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


LOG = [
    "START RequestId: 9a1e Version: $LATEST",  # a CloudWatch line: not ours, not JSON
    request_line("r1", "budget", FEATURES_1),
    request_line("r2", "budget", FEATURES_2),
    {"event": "BreakerOpened", "breaker": "x", "change": "opened"},
    judgement("r1", {"budget": 0.4, "premium": 0.9}, FEATURES_1),
    judgement("r2", {"budget": 1.0, "premium": 1.0}, FEATURES_2, kept_prompt=False),
    judgement("r9", {"budget": 1.4, "premium": 0.5}, FEATURES_2),  # malformed: a score over 1
    '{"type":"judgement","request_id":"r8","scores":{"bud',  # malformed: cut short
]


def labels_of(path: Path) -> dict[str, Label]:
    """Labels by their first message's text (the request's or, for features, the chars)."""
    found = {}
    for label in read_labels(path):
        name = (
            label.request["messages"][0]["content"] if label.request else f"chars={label.features['chars']}"
        )
        found[name] = label
    return found


def put_prompts(db: Path, bodies: dict[str, dict[str, Any]]) -> None:
    async def put() -> None:
        store = SQLiteStore(db)
        try:
            for rid, body in bodies.items():
                value = {"body": json.dumps(body), "tier": "budget"}
                await store.put(prompt_key(rid), value, expires_at=time.time() + 86_400)
        finally:
            await store.aclose()

    asyncio.run(put())


def test_export_with_prompts_kept_in_a_sqlite_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "router.log.gz", LOG)
    db = tmp_path / "state.db"
    put_prompts(db, {"r1": BODY_1})  # r2's prompt was not kept
    out = tmp_path / "labels.jsonl"

    assert main(["labels", str(log), "--store", f"sqlite:///{db}", "--out", str(out)]) == 0

    labels = labels_of(out)
    assert set(labels) == {BODY_1["messages"][0]["content"], "chars=2"}
    kept = labels[BODY_1["messages"][0]["content"]]
    assert kept.request == BODY_1
    assert kept.features is None
    assert kept.scores == {"budget": 0.4, "premium": 0.9}
    assert labels["chars=2"].features == FEATURES_2
    assert labels["chars=2"].scores == {"budget": 1.0, "premium": 1.0}
    err = capsys.readouterr().err
    assert f"labels: 2 written to {out} (1 with the request, 1 with features only)" in err
    assert "read 8 lines: 2 judgements, 0 feedback" in err
    assert "2 malformed judgement or feedback lines, skipped:" in err
    assert f"{log}:7: judgement scores.budget: 1.4 is outside 0..1" in err
    assert f"{log}:8: not JSON" in err


def test_without_a_store_every_label_carries_features(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "router.log", LOG)

    assert main(["labels", str(log)]) == 0

    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [
        {"features": FEATURES_1, "scores": {"budget": 0.4, "premium": 0.9}},
        {"features": FEATURES_2, "scores": {"budget": 1.0, "premium": 1.0}},
    ]
    (tmp_path / "labels.jsonl").write_text(out)
    assert len(list(read_labels(tmp_path / "labels.jsonl"))) == 2


def test_feedback_overrides_the_judge_for_its_tier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(
        tmp_path / "router.log",
        [
            request_line("r1", "budget", FEATURES_1),
            request_line("r3", "standard", FEATURES_3),
            judgement("r1", {"budget": 0.4, "premium": 0.9}, FEATURES_1),
            feedback("r1", 1.0),  # the person who read the answer was happy with it
            feedback("r3", 0.2, tier="standard"),  # feedback only: features from its request line
            feedback("r3", 0.3, tier="standard"),  # the last word counts
            feedback("r4", 1.0),  # feedback only, its request line is not in this log
            judgement("r5", {}, FEATURES_2, verdict=None, error="judge timed out"),  # no score
            feedback("r6", "great"),  # malformed: a score is a number
        ],
    )
    out = tmp_path / "labels.jsonl"

    assert main(["labels", str(log), "--out", str(out)]) == 0

    labels = labels_of(out)
    assert labels["chars=29"].scores == {"budget": 1.0, "premium": 0.9}
    assert labels["chars=400"].scores == {"standard": 0.3}
    assert labels["chars=400"].features == FEATURES_3
    assert len(labels) == 2
    err = capsys.readouterr().err
    assert "read 9 lines: 2 judgements, 4 feedback" in err
    assert "skipped 1 requests without a score" in err
    assert "skipped 1 requests with neither a kept prompt nor features" in err
    assert f"{log}:9: feedback score: expected a number from 0 to 1" in err


def test_logs_from_stdin_and_several_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_log(tmp_path / "a.log", [judgement("r1", {"budget": 0.4, "premium": 0.9}, FEATURES_1)])
    piped = json.dumps(feedback("r1", 0.0)) + "\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(piped.encode())))

    assert main(["labels", str(first), "-"]) == 0

    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {"features": FEATURES_1, "scores": {"budget": 0.0, "premium": 0.9}}


def test_tiers_the_rules_file_does_not_define_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = Path(__file__).resolve().parents[2] / "rules" / "local-demo.yaml"  # budget, ..., premium
    log = write_log(tmp_path / "router.log", [judgement("r1", {"budget": 0.4, "premium": 0.9}, FEATURES_1)])
    assert main(["labels", str(log), "--rules", str(rules)]) == 0
    assert "warning" not in capsys.readouterr().err  # both tiers are defined

    old = write_log(tmp_path / "old.log", [judgement("r2", {"budget": 0.4, "gold": 0.9}, FEATURES_1)])
    assert main(["labels", str(old), "--rules", str(rules)]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 labels score tier 'gold', which the rules file does not define" in err


def test_an_unreadable_log_or_store_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["labels", str(tmp_path / "missing.log")]) == 1
    assert "cannot read" in capsys.readouterr().err
    log = write_log(tmp_path / "router.log", LOG)
    assert main(["labels", str(log), "--store", "redis://nowhere"]) == 1
    assert "unknown store scheme 'redis'" in capsys.readouterr().err


@pytest.mark.anyio
async def test_prompts_are_read_in_batches_of_100(tmp_path: Path) -> None:
    inner = SQLiteStore(tmp_path / "state.db")
    ids = [f"r{i}" for i in range(250)]
    for rid in ids[:240]:
        await inner.put(prompt_key(rid), {"body": json.dumps(BODY_2), "tier": "budget"})
    await inner.put(prompt_key("r240"), {"body": "{not json", "tier": "budget"})
    store = Counting(inner)
    stats = ExportStats()
    try:
        prompts = await read_prompts(store, ids, stats)  # type: ignore[arg-type]
    finally:
        await inner.aclose()
    assert store.calls["get_many"] == 3 == -(-len(ids) // BATCH)
    assert len(prompts) == 240
    assert prompts["r0"] == BODY_2
    assert stats.bad_prompts == 1


def section(title: str) -> str:
    page = (Path(__file__).resolve().parents[2] / "docs" / "quality-loop.md").read_text(encoding="utf-8")
    return page.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_docs_example_is_what_the_command_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = section("Labels")
    console = text.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    shown_labels = text.split("```json\n", 1)[1].split("```", 1)[0]
    command, *printed = console
    monkeypatch.chdir(tmp_path)
    write_log(tmp_path / "router.log.gz", LOG)
    put_prompts(tmp_path / "state.db", {"r1": BODY_1})

    assert command.startswith("$ tier-router ")
    assert main(shlex.split(command)[2:]) == 0

    assert capsys.readouterr().err.splitlines() == printed
    assert (tmp_path / "labels.jsonl").read_text(encoding="utf-8") == shown_labels
