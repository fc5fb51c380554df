"""docs/coldstart.md: the warning line it shows is the one a stale compiled form logs."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from tier_router.routing.compiled import compile_file, load_rules_fast

from tests.docs.blocks import block

ROOT = Path(__file__).resolve().parents[2]


def test_the_stale_warning_is_the_one_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shown = block("docs/coldstart.md", "Compiled rules").text.strip()
    rules = tmp_path / "rules" / "router.yaml"
    rules.parent.mkdir()
    shutil.copy(ROOT / "rules" / "router.yaml", rules)
    compile_file(rules)
    rules.write_text(rules.read_text() + "\n# edited after the build\n")
    with caplog.at_level(logging.WARNING, logger="tier_router"):
        load_rules_fast(rules, expect_compiled=True)
    (logged,) = [r.getMessage() for r in caplog.records]
    assert logged.replace(str(tmp_path), "/var/task") == shown
