"""template.yaml's SnapStart and several-regions options, resolved as CloudFormation resolves
them (tests/support/cfn_template.py): off by default and then the template it was before
(a regional table, no versions, the URL on $LATEST); on, the resources and wiring they add.
`sam validate --lint` (.ci/sam.sh) checks the SAM side; docs/regions.md says how to use them."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
from tier_router.settings import Settings

from tests.support.cfn_template import PSEUDO, ROOT, Resolved, load

TABLE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchGetItem",
]


def resolved(**given: str) -> Resolved:
    return Resolved(load(), **given)


def function(r: Resolved) -> dict[str, Any]:
    return r.resources["RouterFunction"]["Properties"]


def table_statement(r: Resolved) -> dict[str, Any]:
    [statement] = [s for s in function(r)["Policies"][0]["Statement"] if s["Sid"] == "StateTableItems"]
    return statement


def store_url(r: Resolved) -> Any:
    return function(r)["Environment"]["Variables"]["TIER_ROUTER_STORE"]


def test_the_defaults_are_the_template_as_it_was() -> None:
    r = resolved()
    assert "StateTable" in r.resources
    assert r.resources["StateTable"]["Type"] == "AWS::DynamoDB::Table"
    assert not {"GlobalStateTable", "LatestEventInvokeConfig"} & set(r.resources)
    assert "AutoPublishAlias" not in function(r)
    assert "SnapStart" not in function(r)
    assert function(r)["FunctionUrlConfig"]["AuthType"] == "NONE"
    assert store_url(r) == {"Fn::Sub": "dynamodb://${StateTable}"}
    assert table_statement(r) == {
        "Sid": "StateTableItems",
        "Effect": "Allow",
        "Action": TABLE_ACTIONS,
        "Resource": {"Fn::GetAtt": ["StateTable", "Arn"]},
    }
    assert r.outputs["StateTableName"] == {"Ref": "StateTable"}


def test_the_language_extensions_run_before_the_sam_transform() -> None:
    """SAM takes AutoPublishAlias as a string or a parameter Ref only: the condition in it is
    resolved by AWS::LanguageExtensions, which must therefore come first."""
    assert load()["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]


def test_snapstart_on_publishes_versions_behind_the_live_alias() -> None:
    r = resolved(SnapStart="On")
    assert function(r)["AutoPublishAlias"] == "live"  # SAM then puts the Function URL on the alias
    assert function(r)["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert load()["Globals"]["Function"]["Runtime"] in {"python3.12", "python3.13"}  # SnapStart: 3.12+
    # the judge events invoke $LATEST (unqualified): no retries there either
    latest = r.resources["LatestEventInvokeConfig"]["Properties"]
    assert latest == {
        "FunctionName": {"Ref": "RouterFunction"},
        "Qualifier": "$LATEST",
        "MaximumRetryAttempts": 0,
    }
    assert function(r)["EventInvokeConfig"] == {"MaximumRetryAttempts": 0}


def test_snapstart_leaves_the_table_and_policy_alone() -> None:
    assert table_statement(resolved(SnapStart="On")) == table_statement(resolved())
    assert store_url(resolved(SnapStart="On")) == store_url(resolved())


@pytest.mark.parametrize(
    ("regions", "replicas"),
    [
        ("eu-west-1", ["us-east-1", "eu-west-1"]),
        ("eu-west-1,ap-northeast-1", ["us-east-1", "eu-west-1", "ap-northeast-1"]),
        ("eu-west-1,ap-northeast-1,us-west-2", ["us-east-1", "eu-west-1", "ap-northeast-1", "us-west-2"]),
    ],
)
def test_replica_regions_make_the_state_table_a_global_table(regions: str, replicas: list[str]) -> None:
    r = resolved(ReplicaRegions=regions)
    assert "StateTable" not in r.resources
    table = r.resources["GlobalStateTable"]
    assert table["Type"] == "AWS::DynamoDB::GlobalTable"
    assert [replica["Region"] for replica in table["Properties"]["Replicas"]] == replicas
    assert table["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert table["Properties"]["KeySchema"] == resolved().resources["StateTable"]["Properties"]["KeySchema"]
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert store_url(r) == {"Fn::Sub": "dynamodb://${GlobalStateTable}"}
    assert table_statement(r)["Action"] == TABLE_ACTIONS  # least privilege: the same calls,
    assert table_statement(r)["Resource"] == {"Fn::GetAtt": ["GlobalStateTable", "Arn"]}  # on it only
    assert r.outputs["StateTableName"] == {"Ref": "GlobalStateTable"}


def test_point_in_time_recovery_applies_to_every_replica() -> None:
    r = resolved(ReplicaRegions="eu-west-1,ap-northeast-1", PointInTimeRecovery="true")
    replicas = r.resources["GlobalStateTable"]["Properties"]["Replicas"]
    assert all(
        replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] for replica in replicas
    )


def test_a_shared_table_is_used_in_this_region_and_none_is_created() -> None:
    r = resolved(SharedTableName="tier-router-GlobalStateTable-ABC123")
    assert not {"StateTable", "GlobalStateTable"} & set(r.resources)
    assert store_url(r) == "dynamodb://tier-router-GlobalStateTable-ABC123"
    assert table_statement(r)["Action"] == TABLE_ACTIONS
    assert table_statement(r)["Resource"] == (
        "arn:aws:dynamodb:us-east-1:123456789012:table/tier-router-GlobalStateTable-ABC123"
    )
    assert r.outputs["StateTableName"] == "tier-router-GlobalStateTable-ABC123"


def rule_allows(rule_name: str, **given: str) -> bool:
    rule = load()["Rules"][rule_name]
    r = resolved(**given)
    applies = r.value(rule.get("RuleCondition", True))
    return not applies or all(r.value(a["Assert"]) for a in rule["Assertions"])


@pytest.mark.parametrize(
    ("replicas", "shared", "allowed"),
    [("", "", True), ("eu-west-1", "", True), ("", "t", True), ("eu-west-1", "t", False)],
)
def test_replica_regions_and_a_shared_table_are_not_both_set(
    replicas: str, shared: str, allowed: bool
) -> None:
    assert (
        rule_allows("ReplicaRegionsOrSharedTableName", ReplicaRegions=replicas, SharedTableName=shared)
        is allowed
    )


def test_a_shared_table_wins_over_replica_regions() -> None:
    """Both set (the rule above refuses it): no second global table would be created."""
    r = resolved(SharedTableName="shared", ReplicaRegions="eu-west-1")
    assert not {"StateTable", "GlobalStateTable"} & set(r.resources)
    assert store_url(r) == "dynamodb://shared"


@pytest.mark.parametrize(
    ("given", "shared"),
    [
        ({}, False),
        ({"SnapStart": "On"}, False),
        ({"ReplicaRegions": "eu-west-1"}, True),
        ({"SharedTableName": "tier-router-GlobalStateTable-ABC123"}, True),
    ],
)
def test_the_router_keeps_its_own_items_on_a_table_regions_share(given: dict[str, str], shared: bool) -> None:
    """TIER_ROUTER_SHARED_STORE: every key under the region's name (tier_router.store.regional),
    so no item is written from two regions (a global table keeps one of two concurrent writes)."""
    variables = function(resolved(**given))["Environment"]["Variables"]
    assert variables.get("TIER_ROUTER_SHARED_STORE") == ("1" if shared else None)
    environ = {
        "TIER_ROUTER_SHARED_STORE": variables.get("TIER_ROUTER_SHARED_STORE", ""),
        "AWS_REGION": "eu-west-1",
    }
    assert Settings.from_env(environ).shared_store is shared  # what the router makes of it


def pattern_allows(value: str) -> bool:
    """CloudFormation's check of a CommaDelimitedList: each space-trimmed member against the pattern."""
    spec = load()["Parameters"]["ReplicaRegions"]
    assert spec["Type"] == "CommaDelimitedList"
    return all(re.fullmatch(spec["AllowedPattern"], member.strip()) for member in value.split(","))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "eu-west-1",
        "eu-west-1,ap-northeast-1",
        "us-gov-west-1,eu-central-2,ap-south-1",
        "eu-west-1, ap-south-1",
    ],
)
def test_replica_regions_pattern_accepts(value: str) -> None:
    assert pattern_allows(value)


@pytest.mark.parametrize("value", ["EU-WEST-1", "a,b", "eu-west-1,eu_west_2", "eu-west-1;ap-south-1"])
def test_replica_regions_pattern_refuses(value: str) -> None:
    assert not pattern_allows(value)


@pytest.mark.parametrize(
    ("value", "allowed"),
    [("", True), ("eu-west-1", True), ("eu-west-1,", False), (",eu-west-1", False), ("a-b-1,,c-d-2", False)],
)
def test_a_stray_comma_in_replica_regions_is_refused(value: str, allowed: bool) -> None:
    """The pattern takes an empty member (the default is one), so a rule refuses one among regions."""
    assert rule_allows("ReplicaRegionsHaveNoEmptyMember", ReplicaRegions=value) is allowed


@pytest.mark.parametrize(
    ("replicas", "allowed"),
    [
        ("", True),
        ("eu-west-1", True),
        ("eu-west-1,ap-northeast-1,us-west-2", True),
        ("us-east-1", False),  # the stack's own region (the resolver's AWS::Region)
        ("eu-west-1,us-east-1", False),
        ("eu-west-1,ap-northeast-1,us-east-1", False),
        ("us-east-2", True),  # a prefix or suffix of it is another region
    ],
)
def test_replica_regions_that_name_this_stacks_region_are_refused(replicas: str, allowed: bool) -> None:
    assert rule_allows("ReplicaRegionsAreOtherRegions", ReplicaRegions=replicas) is allowed


def test_the_own_region_refusal_says_what_to_do() -> None:
    [assertion] = load()["Rules"]["ReplicaRegionsAreOtherRegions"]["Assertions"]
    assert "remove this stack's region from ReplicaRegions" in assertion["AssertDescription"]


def test_a_fourth_replica_region_fails_the_table_by_name_rather_than_being_left_out() -> None:
    three = resolved(ReplicaRegions="eu-west-1,ap-northeast-1,us-west-2")
    four = resolved(ReplicaRegions="eu-west-1,ap-northeast-1,us-west-2,eu-central-1")
    assert not three.condition("HasTooManyReplicas")
    assert four.condition("HasTooManyReplicas")
    regions = [r["Region"] for r in four.resources["GlobalStateTable"]["Properties"]["Replicas"]]
    assert regions[-1] == "ReplicaRegions-takes-at-most-three-regions"
    assert not re.fullmatch(load()["Parameters"]["ReplicaRegions"]["AllowedPattern"], regions[-1])


def test_snapstart_takes_only_on_or_off() -> None:
    spec = load()["Parameters"]["SnapStart"]
    assert spec["Default"] == "Off"
    assert spec["AllowedValues"] == ["Off", "On"]


@pytest.mark.parametrize(
    ("snapstart", "mode", "allowed"),
    [("Off", "buffered", True), ("Off", "lwa", True), ("On", "buffered", True), ("On", "lwa", False)],
)
def test_snapstart_is_refused_with_the_web_adapter(snapstart: str, mode: str, allowed: bool) -> None:
    """The restore hooks run in the Mangum handler's runtime, which lwa mode replaces."""
    assert rule_allows("SnapStartNeedsBufferedMode", SnapStart=snapstart, StreamingMode=mode) is allowed


def samconfig() -> dict[str, Any]:
    return tomllib.loads((ROOT / "samconfig.toml.example").read_text(encoding="utf-8"))


def overrides(env: str) -> dict[str, str]:
    pairs = samconfig()[env]["deploy"]["parameters"]["parameter_overrides"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_the_global_table_is_named_so_other_regions_can_be_given_its_name() -> None:
    r = resolved(ReplicaRegions="eu-west-1")
    assert r.resources["GlobalStateTable"]["Properties"]["TableName"] == "tier-router-state"


def test_samconfigs_replica_region_uses_the_home_stacks_global_table() -> None:
    """samconfig.toml.example's `eu` environment: the same stack in eu-west-1 on the table the
    default environment makes when ReplicaRegions names eu-west-1."""
    home, replica = samconfig()["default"], samconfig()["eu"]["global"]["parameters"]
    parameters = load()["Parameters"]
    for env in ("default", "staging", "eu"):
        assert set(overrides(env)) <= set(parameters), env
    assert replica["stack_name"] == home["global"]["parameters"]["stack_name"]
    assert replica["region"] == "eu-west-1"
    capabilities = samconfig()["eu"]["deploy"]["parameters"]["capabilities"]
    assert "CAPABILITY_AUTO_EXPAND" in capabilities.split()  # AWS::LanguageExtensions
    table = resolved(ReplicaRegions=replica["region"]).resources["GlobalStateTable"]["Properties"][
        "TableName"
    ]
    assert overrides("eu")["SharedTableName"] == table
    assert "ReplicaRegions" not in overrides("eu")
    assert home["global"]["parameters"]["region"] == PSEUDO["AWS::Region"]  # as the resolver reads it:
    assert rule_allows("ReplicaRegionsAreOtherRegions", ReplicaRegions=replica["region"])  # not its own
    shared = resolved(**overrides("eu"))
    assert not {"StateTable", "GlobalStateTable"} & set(shared.resources)
