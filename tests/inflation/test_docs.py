"""What docs/spend.md ("Tokens per request over time") shows is what the code does: the
commands parse as `tier-router status --days 14`, the table and the JSON are the example's
(tests/inflation/example.py) as the code renders them, the figures quoted in the text are
those, and the alarm command creates the alarm. docs/observability.md names the new metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tier_router.cli import build_parser, run_status
from tier_router.spend.trend import render

from tests.inflation.example import example_trend
from tests.quality_report.test_docs import blocks, section
from tests.support.cfn_template import Resolved, load

TREND = section("spend.md", "## Tokens per request over time").split("\n# ")[0]  # up to "# Router keys"
DATA = asyncio.run(example_trend()).as_dict()


def test_the_section_keeps_its_marker() -> None:
    assert (
        '<!-- trend: tier-router status --days, /v1/router/status "trend", the EMF metric and the alarm -->'
        in TREND
    )


def test_the_status_commands() -> None:
    commands, _ = blocks(TREND, "sh")
    for command in commands.splitlines():
        words = command.split()
        assert words[0] == "tier-router"
        args = build_parser().parse_args(words[1:])
        assert (args.run, args.days) == (run_status, 14)
    assert [line.endswith("--json") for line in commands.splitlines()] == [False, True]


def test_the_trend_output() -> None:
    [table] = blocks(TREND, "text")
    assert table.rstrip("\n") == render(DATA)


def test_the_json_excerpt() -> None:
    [excerpt] = blocks(TREND, "json")
    large = json.loads(excerpt)["model"]["large"]
    assert large["week_over_week"] == DATA["model"]["large"]["week_over_week"]
    assert large["by_day"] == ["...", DATA["model"]["large"]["by_day"][-1]]


def test_the_figures_quoted_in_the_text() -> None:
    wow = DATA["model"]["large"]["week_over_week"]
    assert (round(wow["output_tokens_per_request"] * 100), round(wow["cost_per_request"] * 100)) == (29, 16)
    assert "`large` answers 29% longer this week" in TREND
    assert "costs 16% more per request" in TREND
    assert DATA["model"]["small"]["week_over_week"]["output_tokens_per_request"] == 0


def test_the_alarm_command() -> None:
    _, alarm = blocks(TREND, "sh")
    words = alarm.split()
    assert words[:3] == ["sam", "deploy", "--parameter-overrides"]
    given = dict(word.split("=", 1) for word in words[3:])
    data = load()
    assert set(given) <= set(data["Parameters"])
    created = Resolved(data, **given).resources
    metric = created["TokenInflationAlarm"]["Properties"]["Metrics"][1]["MetricStat"]["Metric"]
    assert metric["Dimensions"] == [{"Name": "model", "Value": "large"}]


def test_observability_lists_the_metrics() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text(encoding="utf-8")
    flat = " ".join(text.split())
    for name in ("InputTokens", "OutputTokens", "CachedTokens", "CacheSavings", "OutputTokensVsLastWeek"):
        assert name in flat
    assert "cached_tokens" in flat
