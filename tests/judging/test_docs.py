"""What docs/quality-loop.md ("Sampled judging") and rules/router.yaml say about judging holds:
their YAML loads and configures what they say; the cost figures are bench/judge.py's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from tier_router.quality.sampling import Sampling
from tier_router.routing.loader import parse_rules

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "quality-loop.md"
SHIPPED = ROOT / "rules" / "router.yaml"


def section() -> str:
    text = DOC.read_text()
    start = text.index("## Sampled judging")
    return text[start : text.index("\n## ", start + 1)]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", section(), re.S)


def shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def test_the_docs_quality_block_loads_into_the_shipped_rules() -> None:
    (block,) = blocks("yaml")
    fragment = yaml.safe_load(block)
    rules = shipped()
    rules["quality"] = fragment["quality"]
    rules["rules"] = fragment["rules"] + rules["rules"][:-1]  # the shipped short-chat replaced
    loaded = parse_rules(rules, "docs.yaml")
    quality = loaded.spec.quality
    assert (quality.sample, quality.reference, quality.judge.model, quality.budget_usd) == (
        0.02,
        "premium",
        "gpt-4.1",
        2,
    )
    sampling = Sampling.of(loaded.spec)
    assert sampling is not None
    assert (sampling.rules["short-chat"].rate, sampling.rules["short-chat"].reference) == (0.1, "standard")


def test_the_commented_quality_block_of_router_yaml_loads_when_uncommented() -> None:
    lines = SHIPPED.read_text().splitlines()
    start = lines.index("# quality:")
    block = []
    for line in lines[start:]:
        if not line.startswith("# ") or not (line == "# quality:" or line.startswith("#  ")):
            break
        block.append(line[2:])
    assert len(block) >= 12
    rules = shipped()
    rules.update(yaml.safe_load("\n".join(block)))
    quality = parse_rules(rules, "router.yaml").spec.quality
    assert quality.judging
    assert quality.sample == 0.02
    assert quality.judge.max_tokens == 400
    assert shipped().get("quality") is None  # off by default


def documented_line() -> dict:
    """The judgement line the docs show (test_judging compares it with a real one)."""
    (line,) = blocks("json")
    return json.loads(line)


def test_the_cost_figures_are_the_benchmarks(tmp_path: Path) -> None:
    out = tmp_path / "judge.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "judge.py"), "--json", str(out)],
        check=True,
        capture_output=True,
    )
    rows = {row["conversation_tokens"] // 100: row for row in json.loads(out.read_text())["rows"]}
    short, mid, long, longer = rows[0], rows[20], rows[80], rows[300]
    assert abs(short["total_tokens"] - 2_300) < 100
    assert abs(short["cost_micro_usd"] - 9_000) < 500
    assert abs(mid["total_tokens"] - 8_100) < 100
    assert abs(mid["cost_micro_usd"] - 22_000) < 1_000
    assert abs(long["judge_prompt"] - longer["judge_prompt"]) < 20  # past the cut, the judge's part stays
    assert abs(long["judge_prompt"] - 13_800) < 100
    assert short["reserved_micro_usd"] >= 180_000
    assert longer["reserved_micro_usd"] <= 870_000
    for row in (short, mid):  # per order: ~270 tokens of rubric and framing, the conversation, both answers
        expected = 2 * (270 + row["conversation_tokens"] + 2 * row["answer_tokens"])
        assert abs(row["judge_prompt"] - expected) < 20
    assert all(row["judge_completion"] == 40 for row in rows.values())  # 20 per order
