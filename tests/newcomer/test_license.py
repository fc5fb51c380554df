"""The project says Apache-2.0 in SPDX form and ships the license text it names."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_license_is_declared_as_an_spdx_string_with_its_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert project["project"]["license-files"] == ["LICENSE"]
    # PEP 639 fields need setuptools 77 in the isolated build
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in project["build-system"]["requires"])
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text


def test_local_state_is_not_committed() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".tier-router/" in ignored  # the default store and the default router keys file
