"""The blocks that need no router (tests/docs/coverage.py: RUN_OFFLINE, YAML): commands run as
written in a scratch directory whose `rules/` is the repository's (what they print compared
with what the block shows), and rules-file YAML loaded by the rules loader."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tier_router.routing.loader import parse_rules

from tests.docs.blocks import ROOT, Block, blocks, console_steps, same_output, sh_commands
from tests.docs.coverage import CHECKED, RUN_OFFLINE, YAML
from tests.support.router_process import base_env, tier_router_command

COMMANDS = [b for b in blocks() if CHECKED.get(b.key) == RUN_OFFLINE]
DOCUMENTS = [b for b in blocks() if CHECKED.get(b.key) == YAML]
SHIPPED = ROOT / "rules" / "router.yaml"


def scratch(tmp_path: Path) -> Path:
    """A working directory as a user's clone looks to these commands: `rules/` is the repo's."""
    (tmp_path / "rules").symlink_to(ROOT / "rules")
    return tmp_path


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`command` in bash, `tier-router` being this checkout's (the installed script or the module)."""
    bin_dir = cwd / ".bin"
    bin_dir.mkdir(exist_ok=True)
    launcher = bin_dir / "tier-router"
    launcher.write_text("#!/bin/sh\nexec " + " ".join(f"'{x}'" for x in tier_router_command()) + ' "$@"\n')
    launcher.chmod(0o755)
    env = base_env({})
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def test_there_are_commands_and_documents() -> None:
    assert len(COMMANDS) >= 3
    assert len(DOCUMENTS) >= 4


@pytest.mark.parametrize("block", COMMANDS, ids=str)
def test_the_command_prints_what_the_block_shows(block: Block, tmp_path: Path) -> None:
    cwd = scratch(tmp_path)
    if block.lang == "sh":
        for command in sh_commands(block.text):
            done = shell(command, cwd)
            assert done.returncode == 0, (command, done.stderr)
        return
    for step in console_steps(block.text):
        done = shell(step.command, cwd)
        assert done.returncode == 0, (step.command, done.stderr)
        problem = same_output(step.output, done.stdout.splitlines())
        assert problem is None, f"{block}: {step.command}\n{problem}"


def merged(fragment: dict[str, Any]) -> dict[str, Any]:
    """A fragment's sections over the shipped rules file (mappings merged key by key)."""
    rules = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    for section, value in fragment.items():
        if isinstance(value, dict) and isinstance(rules.get(section), dict):
            rules[section] = {**rules[section], **copy.deepcopy(value)}
        else:
            rules[section] = copy.deepcopy(value)
    return rules


@pytest.mark.parametrize("block", DOCUMENTS, ids=str)
def test_the_yaml_loads(block: Block) -> None:
    document = yaml.safe_load(block.text)
    assert isinstance(document, dict), block
    assert document, block
    complete = {"providers", "models", "tiers"} <= set(document)
    rules = document if complete else merged(document)
    loaded = parse_rules(rules, str(block))
    spec = loaded.spec
    fields = type(spec).model_fields
    taken = {fields[name].alias or name for name in spec.model_fields_set}
    assert set(document) <= taken, "a section the loader did not take"
