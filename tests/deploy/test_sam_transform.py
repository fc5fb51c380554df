"""template.yaml's SnapStart option through SAM's own transform (samtranslator, offline, in the
SAM CLI that .ci/sam.sh installs): why the template lists AWS::LanguageExtensions, and what
each setting deploys. SAM takes `AutoPublishAlias` as a string or a parameter Ref only, and
an empty alias is an error, so "versions and an alias only when SnapStart=On" needs the
condition resolved before SAM runs — which is what AWS::LanguageExtensions does."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import ROOT

CHILD = Path(__file__).with_name("sam_transform_child.py")
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def sam_python() -> Path:
    """The SAM CLI's interpreter: $TIER_ROUTER_SAM_PYTHON, else .ci/sam.sh's .venv-sam."""
    configured = os.environ.get("TIER_ROUTER_SAM_PYTHON")
    path = Path(configured) if configured else ROOT / ".venv-sam" / "bin" / "python"
    if not path.is_file():
        message = "no SAM CLI (samtranslator) here; install it with `bash .ci/sam.sh`"
        if os.environ.get("CI"):
            pytest.fail(f"CI runs .ci/sam.sh first: {message}")
        pytest.skip(message)
    return path


def transformed(**parameters: str) -> dict[str, Any]:
    env = {"PATH": os.environ.get("PATH", ""), **FAKE_AWS}
    done = subprocess.run(
        [str(sam_python()), str(CHILD), json.dumps(parameters)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


@pytest.fixture(scope="module")
def on() -> dict[str, Any]:
    return transformed(SnapStart="On")


@pytest.fixture(scope="module")
def off() -> dict[str, Any]:
    return transformed(SnapStart="Off")


def test_sam_alone_refuses_a_conditional_alias_either_way(on: dict[str, Any], off: dict[str, Any]) -> None:
    for result in (on, off):
        [cause] = result["sam_only"]["refused"]
        assert "'AutoPublishAlias' must be a string or a Ref to a template parameter" in cause


def test_the_template_runs_the_language_extensions_before_sam(on: dict[str, Any]) -> None:
    assert on["transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]


def test_snapstart_on_publishes_a_version_behind_alias_live_and_the_url_is_the_aliases(
    on: dict[str, Any],
) -> None:
    resources = on["language_extensions_first"]["resources"]
    [version] = of_type(resources, "AWS::Lambda::Version").values()
    assert version["DeletionPolicy"] == "Retain"  # old versions stay (docs/regions.md: delete them)
    [(alias_name, alias)] = of_type(resources, "AWS::Lambda::Alias").items()
    assert alias["Properties"]["Name"] == "live"
    [url] = of_type(resources, "AWS::Lambda::Url").values()
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": alias_name}
    function = resources["RouterFunction"]["Properties"]
    assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    qualifiers = {
        r["Properties"]["Qualifier"] for r in of_type(resources, "AWS::Lambda::EventInvokeConfig").values()
    }
    assert qualifiers == {"live", "$LATEST"}  # the alias's, and the template's own for $LATEST


def test_snapstart_off_deploys_no_version_and_the_url_on_latest(off: dict[str, Any]) -> None:
    resources = off["language_extensions_first"]["resources"]
    assert not of_type(resources, "AWS::Lambda::Version")
    assert not of_type(resources, "AWS::Lambda::Alias")
    [url] = of_type(resources, "AWS::Lambda::Url").values()
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": "RouterFunction"}
    assert "SnapStart" not in resources["RouterFunction"]["Properties"]


def test_cfn_lint_finds_nothing_in_either_branch_of_the_options() -> None:
    """What `sam validate --lint` runs (cfn-lint, SAM transform included). It checks both branches
    of every condition whatever the parameters: a bad value in the SnapStart=On branch alone is
    reported with SnapStart=Off too (tried by hand), so one run covers the options on and off."""
    lint = sam_python().parent / "cfn-lint"
    done = subprocess.run(
        [str(lint), str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), **FAKE_AWS},
        timeout=300,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, ""), done.stdout + done.stderr


def test_sam_hands_the_template_rules_on_to_cloudformation_unchanged() -> None:
    """CloudFormation evaluates `Rules` before it makes anything; SAM's transform must pass them
    through as written, the own-region refusal of ReplicaRegions included."""
    result = transformed(ReplicaRegions="eu-west-1,ap-northeast-1")
    assert result["rules_through_sam"] == result["rules"]
    assert result["rules"]["ReplicaRegionsAreOtherRegions"]["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Contains": [{"Ref": "ReplicaRegions"}, {"Ref": "AWS::Region"}]}]
    }
