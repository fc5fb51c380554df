"""`tier-router keys create`: written to .tier-router/keys.yaml by default (outside the packaged
rules/ folder), one clean line and exit 2 for a bad name or limit (no pydantic text, no URL), and
`--tiers` checked against the rules file (`--rules`, default rules/router.yaml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tier_router.router_keys import parse_keys

from tests.support.demo import DEMO

ROOT = Path(__file__).resolve().parents[2]


def create(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIER_ROUTER_")}
    return subprocess.run(
        [sys.executable, "-m", "tier_router.cli", "keys", "create", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def test_the_default_file_is_outside_rules_and_says_how_to_serve_with_it(tmp_path: Path) -> None:
    result = create("team-a", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (record,) = parse_keys((tmp_path / ".tier-router" / "keys.yaml").read_text(), "keys")
    assert record.name == "team-a"
    assert not (tmp_path / "rules").exists()
    assert "TIER_ROUTER_KEYS_FILE=.tier-router/keys.yaml" in result.stderr
    assert result.stdout.strip().startswith("trk-")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["bad name!"],
            "invalid key name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter",
        ),
        (["x" * 65], "invalid key name"),
        (["-lead"], None),  # argparse's own refusal (an option), exit 2 as well
        (["ok", "--rpm", "-1"], "--rpm: input should be greater than or equal to 0"),
        (["ok", "--daily-usd", "-5"], "--daily-usd: input should be greater than or equal to 0"),
        (["ok", "--tiers", ","], "--tiers: name at least one tier"),
    ],
)
def test_bad_arguments_are_one_clean_line_and_exit_2(
    tmp_path: Path, argv: list[str], message: str | None
) -> None:
    result = create(*argv, "--file", str(tmp_path / "keys.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "pydantic" not in result.stderr
    assert "http" not in result.stderr
    assert not (tmp_path / "keys.yaml").exists()
    if message is not None:
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"cannot create key: {message}")


def test_an_unknown_tier_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    result = create("ci", "--tiers", "budget,nope", "--rules", str(DEMO), "--file", "k.yaml", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"cannot create key: --tiers: unknown tier 'nope' in {DEMO} (its tiers: budget, ")
    assert not (tmp_path / "k.yaml").exists()


def test_known_tiers_are_accepted(tmp_path: Path) -> None:
    result = create(
        "ci", "--tiers", "budget, premium", "--rules", str(DEMO), "--file", "k.yaml", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (record,) = parse_keys((tmp_path / "k.yaml").read_text(), "k.yaml")
    assert record.tiers == ["budget", "premium"]


def test_tiers_are_checked_against_the_default_rules_file(tmp_path: Path) -> None:
    """In the project's root the default is rules/router.yaml (tiers budget, standard, premium)."""
    result = create("ci", "--tiers", "fast", "--file", str(tmp_path / "k.yaml"), cwd=ROOT)
    assert result.returncode == 2
    assert "unknown tier 'fast' in rules/router.yaml" in result.stderr


def test_a_rules_file_that_does_not_load_is_named(tmp_path: Path) -> None:
    result = create("ci", "--tiers", "x", "--rules", str(tmp_path / "none.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    assert f"see `tier-router check {tmp_path / 'none.yaml'}`" in result.stderr
