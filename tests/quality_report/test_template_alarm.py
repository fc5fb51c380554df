"""template.yaml's optional quality alarm: CloudWatch's JudgedLoss (namespace TierRouter,
dimension tier, Average = the loss rate the judging's log lines carry), created only when
its threshold parameter is set. The template is read as CloudFormation reads it (its short
tags as the intrinsic functions they stand for) and its conditions evaluated for given
parameters; `sam validate --lint` (.ci/sam.sh) checks the rest."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.cfn_template import Resolved, load


def created(data: dict[str, Any], **given: str) -> set[str]:
    """The resources CloudFormation creates with these parameters (their conditions resolved by
    tests/support/cfn_template.py, which reads every function the template's conditions use)."""
    return set(Resolved(data, **given).resources)


def test_the_alarm_exists_only_when_its_threshold_is_set() -> None:
    data = load()
    assert "JudgedLossAlarm" not in created(data)  # the default: no alarm
    assert "JudgedLossAlarm" not in created(data, JudgedLossAlarmThreshold="")
    assert "JudgedLossAlarm" in created(data, JudgedLossAlarmThreshold="0.2")
    assert "JudgedLossAlarm" in created(data, JudgedLossAlarmThreshold="0.2", StreamingMode="lwa")
    # nothing else depends on it
    assert created(data) == created(data, JudgedLossAlarmThreshold="0.2") - {"JudgedLossAlarm"}


def test_the_alarm_watches_a_tiers_hourly_loss_rate() -> None:
    alarm = load()["Resources"]["JudgedLossAlarm"]
    assert alarm["Type"] == "AWS::CloudWatch::Alarm"
    props = alarm["Properties"]
    assert (props["Namespace"], props["MetricName"]) == ("TierRouter", "JudgedLoss")
    assert props["Dimensions"] == [{"Name": "tier", "Value": {"Ref": "JudgedLossAlarmTier"}}]
    assert (props["Statistic"], props["Period"], props["EvaluationPeriods"]) == ("Average", 3600, 1)
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["Threshold"] == {"Ref": "JudgedLossAlarmThreshold"}
    assert props["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        *[("", True), ("0.2", True), ("0", True), ("0.05", True), ("1", True), ("1.0", True)],
        *[("20", False), ("-0.1", False), ("1.5", False), ("0.", False), (".2", False), ("abc", False)],
    ],
)
def test_the_threshold_is_a_rate_or_empty(value: str, allowed: bool) -> None:
    """CloudFormation matches AllowedPattern against the whole value."""
    pattern = load()["Parameters"]["JudgedLossAlarmThreshold"]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) is allowed
