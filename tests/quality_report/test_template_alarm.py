"""template.yaml's optional quality alarm: CloudWatch's JudgedLoss (namespace TierRouter,
dimension tier, Average = the loss rate the judging's log lines carry), created only when
its threshold parameter is set. The template is read as CloudFormation reads it (its short
tags as the intrinsic functions they stand for) and its conditions evaluated for given
parameters; `sam validate --lint` (.ci/sam.sh) checks the rest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cfn_template import Resolved

ROOT = Path(__file__).resolve().parents[2]


class CfnLoader(yaml.SafeLoader):
    """`!Ref X` -> {"Ref": X}, `!Condition C` -> {"Condition": C}, `!GetAtt A.B` ->
    {"Fn::GetAtt": [A, B]}, `!Name v` -> {"Fn::Name": v}."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    return yaml.load((ROOT / "template.yaml").read_text(encoding="utf-8"), Loader=CfnLoader)  # noqa: S506


def created(data: dict[str, Any], **given: str) -> set[str]:
    """The resources CloudFormation creates with these parameters (their conditions resolved by
    tests/support/cfn_template.py, which reads every function the template's conditions use)."""
    return set(Resolved(data, **given).resources)


def test_the_alarm_exists_only_when_its_threshold_is_set() -> None:
    data = template()
    assert "JudgedLossAlarm" not in created(data)  # the default: no alarm
    assert "JudgedLossAlarm" not in created(data, JudgedLossAlarmThreshold="")
    assert "JudgedLossAlarm" in created(data, JudgedLossAlarmThreshold="0.2")
    assert "JudgedLossAlarm" in created(data, JudgedLossAlarmThreshold="0.2", StreamingMode="lwa")
    # nothing else depends on it
    assert created(data) == created(data, JudgedLossAlarmThreshold="0.2") - {"JudgedLossAlarm"}


def test_the_alarm_watches_a_tiers_hourly_loss_rate() -> None:
    alarm = template()["Resources"]["JudgedLossAlarm"]
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
    pattern = template()["Parameters"]["JudgedLossAlarmThreshold"]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) is allowed
