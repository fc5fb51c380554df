"""The Lambda artifact never holds a router keys file: `make sources` (the copy step of
`build-RouterFunction`) leaves out any `keys.yaml`, wherever it lies under rules/ — such as
the file an older `tier-router keys create` wrote by default (rules/keys.yaml). Run on a
scratch copy of handler/, no Python 3.12 or download needed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLER = ROOT / "handler"


@pytest.mark.skipif(not (shutil.which("make") and shutil.which("tar")), reason="needs make and tar")
def test_the_copy_step_leaves_out_every_keys_file(tmp_path: Path) -> None:
    handler = tmp_path / "handler"
    handler.mkdir()
    shutil.copy(HANDLER / "Makefile", handler / "Makefile")
    shutil.copy(HANDLER / "run.sh", handler / "run.sh")
    (handler / "tier_router").symlink_to(HANDLER / "tier_router")
    rules = handler / "rules"
    shutil.copytree(ROOT / "rules", rules, ignore=shutil.ignore_patterns("samples"))
    (rules / "samples").mkdir()
    (rules / "samples" / "requests.jsonl").write_text("{}\n")
    for path in (rules / "keys.yaml", rules / "team" / "keys.yaml", rules / "prod.keys.yaml"):
        path.parent.mkdir(exist_ok=True)
        path.write_text("keys: []\n")
    out = tmp_path / "artifact"
    out.mkdir()
    subprocess.run(
        ["make", "-C", str(handler), "sources", f"ARTIFACTS_DIR={out}"], check=True, capture_output=True
    )
    shipped = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "rules/router.yaml" in shipped
    assert "rules/local-demo.yaml" in shipped
    assert "tier_router/lambda_entry.py" in shipped
    assert "run.sh" in shipped
    assert not [p for p in shipped if p.endswith("keys.yaml")]
    assert not [p for p in shipped if p.startswith("rules/samples")]


def test_the_build_uses_the_copy_step() -> None:
    makefile = (HANDLER / "Makefile").read_text()
    build = makefile.split("build-RouterFunction:", 1)[1].split("\n\n", 1)[0]
    assert "sources ARTIFACTS_DIR=" in build
    assert "tar --create" not in build  # one copy rule, the one tested above


def test_built_artifacts_hold_no_keys_file(built_artifacts: list[Path]) -> None:
    for artifact in built_artifacts:
        assert not list(artifact.rglob("*keys.yaml")), artifact
