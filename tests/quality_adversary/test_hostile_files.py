"""Adversary: `tier-router calibrate` and `tier-router labels` on hostile files.

A label file or a log is data from anywhere (a team's own evaluation set, a log copied from
CloudWatch, a file cut or corrupted on the way). The promises: calibrate refuses with the
file and line named, or writes a file `tier-router check` loads — never a traceback; the
labels export counts a bad line as malformed and goes on, and what it writes is JSON that
any strict reader (not only Python's, which reads NaN) accepts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tier_router.cli import main

from tests.calibrate.synthetic import length_labels, write_labels, write_rules

DEEP = "[" * 100_000 + "]" * 100_000
"""Valid JSON nested past Python's recursion limit (a 200 KB line, well under the 4 MB cap)."""


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"features": {"conversation_tokens": 3}, "scores": {"budget": "\xff"}}', "not UTF-8 text"),
        (DEEP.encode(), "nested too deeply"),
        (b'{"request": ' + DEEP.encode() + b', "scores": {"budget": 1}}', "nested too deeply"),
    ],
    ids=["not-utf8", "deep-array", "deep-request"],
)
def test_calibrate_refuses_a_line_python_cannot_decode_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: bytes, reason: str
) -> None:
    # Before the fix: UnicodeDecodeError / RecursionError escaped read_labels, a traceback.
    rules = write_rules(tmp_path)
    labels = write_labels(tmp_path / "labels.jsonl", length_labels(200, 500))
    labels.write_bytes(labels.read_bytes() + raw + b"\n")
    out = tmp_path / "calibrated.yaml"

    code = main(["calibrate", str(labels), "--rules", str(rules), "--target", "0.9", "--out", str(out)])

    assert code == 1
    err = capsys.readouterr().err
    assert f"{labels}:201: not JSON ({reason})" in err
    assert "Traceback" not in err
    assert not out.exists()


def judgement_line(rid: str, features: str) -> str:
    return (
        f'{{"type": "judgement", "request_id": "{rid}", "tier": "budget", "reference": "premium", '
        f'"verdict": "win", "scores": {{"budget": 0.9, "premium": 0.8}}, "features": {features}}}'
    )


def test_labels_skips_a_log_line_python_cannot_decode_and_exports_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before the fix: the deeply nested line ended the export with a RecursionError traceback.
    log = tmp_path / "router.log"
    good = judgement_line("r1", '{"conversation_tokens": 12, "last_user_tokens": 12}')
    deep = f'{{"type": "judgement", "request_id": "r2", "scores": {DEEP}}}'
    log.write_bytes(
        b"\n".join([good.encode(), deep.encode(), b'{"type": "judgement", "request_id": "\xff"}']) + b"\n"
    )
    out = tmp_path / "labels.jsonl"

    assert main(["labels", str(log), "--out", str(out)]) == 0

    err = capsys.readouterr().err
    assert "labels: 1 written" in err
    assert "2 malformed judgement or feedback lines, skipped:" in err
    assert f"{log}:2: not JSON" in err
    assert f"{log}:3: not JSON" in err
    assert [json.loads(line)["scores"] for line in out.read_text().splitlines()] == [
        {"budget": 0.9, "premium": 0.8}
    ]


def strict(text: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_labels_never_writes_nan_or_infinity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before the fix: features with NaN / Infinity (which Python's json reads) were exported as
    # they came, `{"features": {"conversation_tokens": NaN, ...}}`: not JSON to jq, Go or JS.
    log = tmp_path / "router.log"
    rows = [
        judgement_line("r1", '{"conversation_tokens": NaN, "last_user_tokens": 4}'),
        judgement_line("r2", '{"conversation_tokens": 7, "nested": {"x": -Infinity}}'),
        judgement_line("r3", '{"conversation_tokens": 9, "last_user_tokens": 9}'),
    ]
    log.write_text("\n".join(rows) + "\n")
    out = tmp_path / "labels.jsonl"

    assert main(["labels", str(log), "--out", str(out)]) == 0

    labels = [strict(line) for line in out.read_text().splitlines()]
    assert labels == [
        {
            "features": {"conversation_tokens": 9, "last_user_tokens": 9},
            "scores": {"budget": 0.9, "premium": 0.8},
        }
    ]
    err = capsys.readouterr().err
    assert "2 malformed judgement or feedback lines" in err
    assert f"{log}:1: judgement features: NaN or Infinity is not JSON" in err


def features_label(tokens: int, budget: float, premium: float) -> dict[str, object]:
    return {"features": {"conversation_tokens": tokens}, "scores": {"budget": budget, "premium": premium}}


def test_calibrate_refuses_labels_where_no_tier_is_ever_acceptable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before the fix: the best tier's quality 0 made every policy "keep 90% of it"; calibrate
    # wrote a rule sending all traffic to the cheap tier, its comment "held-out quality nan%".
    rules = write_rules(tmp_path)
    labels = tmp_path / "zeros.jsonl"
    labels.write_text("".join(json.dumps(features_label(10 + i, 0, 0)) + "\n" for i in range(400)))
    out = tmp_path / "calibrated.yaml"

    code = main(["calibrate", str(labels), "--rules", str(rules), "--target", "0.9", "--out", str(out)])

    assert code == 1
    assert "every training label scores every tier 0" in capsys.readouterr().err
    assert not out.exists()


def test_calibrate_refuses_when_the_held_out_labels_score_the_best_tier_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before the fix: a NaN relative quality passed the held-out check (NaN < x is False).
    import random

    n, holdout = 400, 0.3
    order = list(range(n))
    random.Random(0).shuffle(order)  # the split calibrate makes with --seed 0
    held = set(order[: round(n * holdout)])
    rows = [features_label(10 + i, 1.0, 0.0 if i in held else 1.0) for i in range(n)]
    rules = write_rules(tmp_path)
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "calibrated.yaml"

    code = main(["calibrate", str(labels), "--rules", str(rules), "--target", "0.9", "--out", str(out)])

    assert code == 1
    err = capsys.readouterr().err
    assert "the held-out labels score 'premium' 0 on average" in err
    assert "nan" not in err
    assert not out.exists()
