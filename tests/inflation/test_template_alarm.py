"""template.yaml's optional token-inflation alarm: CloudWatch's OutputTokensVsLastWeek (namespace
TierRouter; by model, or with no dimension for every model together), its daily Average minus 1
against the threshold, created only when the threshold is set. Read as CloudFormation reads it
(tests/support/cfn_template.py); `sam validate --lint` (.ci/sam.sh) checks the rest."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tier_router.schema.units import NAME_PATTERN
from tier_router.telemetry import INFLATION

from tests.support.cfn_template import Resolved, load

ALARM = "TokenInflationAlarm"


def created(data: dict[str, Any], **given: str) -> dict[str, Any]:
    return Resolved(data, **given).resources


def test_the_alarm_exists_only_when_its_threshold_is_set() -> None:
    data = load()
    assert ALARM not in created(data)
    assert ALARM not in created(data, TokenInflationAlarmThreshold="", TokenInflationAlarmModel="claude")
    assert ALARM in created(data, TokenInflationAlarmThreshold="0.3")
    assert ALARM in created(data, TokenInflationAlarmThreshold="0.3", StreamingMode="lwa")
    assert set(created(data)) == set(created(data, TokenInflationAlarmThreshold="0.3")) - {ALARM}


def the_metric(props: dict[str, Any]) -> dict[str, Any]:
    rise, ratio = props["Metrics"]
    assert rise == {
        "Id": "rise",
        "Expression": "ratio - 1",
        "Label": "Output tokens per request over last week's, minus 1",
        "ReturnData": True,
    }
    assert (ratio["Id"], ratio["ReturnData"]) == ("ratio", False)
    stat = ratio["MetricStat"]
    assert (stat["Period"], stat["Stat"]) == (86400, "Average")
    return stat["Metric"]


def test_every_model_together_or_one() -> None:
    """The metric the router emits (telemetry.INFLATION): no dimension, or `model`."""
    data = load()
    assert INFLATION["Dimensions"] == [[], ["model"]]
    every = created(data, TokenInflationAlarmThreshold="0.3")[ALARM]["Properties"]
    metric = the_metric(every)
    assert metric == {"Namespace": "TierRouter", "MetricName": "OutputTokensVsLastWeek"}
    assert (every["EvaluationPeriods"], every["ComparisonOperator"]) == (1, "GreaterThanThreshold")
    assert (every["Threshold"], every["TreatMissingData"]) == ("0.3", "notBreaching")
    assert "the models' answers used more than 0.3" in every["AlarmDescription"]
    one = created(data, TokenInflationAlarmThreshold="0.25", TokenInflationAlarmModel="claude")[ALARM][
        "Properties"
    ]
    assert the_metric(one)["Dimensions"] == [{"Name": "model", "Value": "claude"}]
    assert one["Threshold"] == "0.25"
    assert "model claude's answers used more than 0.25" in one["AlarmDescription"]


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        *[("", True), ("0.3", True), ("0", True), ("1", True), ("2.5", True), ("0.05", True)],
        *[("-0.1", False), (".3", False), ("0.", False), ("30%", False), ("abc", False)],
    ],
)
def test_the_threshold_is_a_rise_or_empty(value: str, allowed: bool) -> None:
    pattern = load()["Parameters"]["TokenInflationAlarmThreshold"]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) is allowed


@pytest.mark.parametrize("model", ["", "claude", "gpt-4.1-mini", "anthropic/claude:sonnet@4+1", "-x", "a b"])
def test_the_model_is_a_rules_file_name_or_empty(model: str) -> None:
    pattern = load()["Parameters"]["TokenInflationAlarmModel"]["AllowedPattern"]
    expected = model == "" or re.fullmatch(NAME_PATTERN, model) is not None
    assert (re.fullmatch(pattern, model) is not None) is expected
