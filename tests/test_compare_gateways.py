"""bench/compare_gateways.py: a gateway that is not installed is a SKIPPED row that says how to
install it, never a crash; the table shows medians with the spread over runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench import compare_gateways as cg

ROOT = Path(__file__).resolve().parents[1]


def test_missing_gateways_are_skipped_with_the_install_command(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    nowhere = tmp_path / "not-installed"
    cmd = [
        sys.executable, str(ROOT / "bench" / "compare_gateways.py"), "--only", "litellm,portkey",
        "--litellm-venv", str(nowhere), "--portkey-dir", str(nowhere), "--runs", "1",
        "--modes", "plain", "--requests", "5", "--wrk-seconds", "1", "--no-imports", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "SKIPPED" in line]
    assert len(rows) == 2, done.stdout
    assert "LiteLLM proxy | SKIPPED: not installed" in rows[0]
    assert "pip install 'litellm[proxy]'" in rows[0]
    assert "Portkey gateway (Node) | SKIPPED: not installed" in rows[1]
    assert "npm install @portkey-ai/gateway" in rows[1]
    report = json.loads(out.read_text())
    assert set(report["unavailable"]) == {"litellm", "portkey"}
    assert report["summary"] == {}
    assert out.with_suffix(".md").read_text().count("SKIPPED") == 2


def test_the_table_gives_the_median_and_the_spread_over_runs() -> None:
    runs = [
        {"router": {"plain_rps": 100.0, "cold_start_s": 1.0, "plain_upstream_matches": True}},
        {"router": {"plain_rps": 300.0, "cold_start_s": 1.0, "plain_upstream_matches": True}},
        {"router": {"plain_rps": 200.0, "cold_start_s": 1.0, "plain_upstream_matches": False}},
    ]
    summary = cg.aggregate(runs)["router"]
    assert summary["plain_rps"]["median"] == 200.0
    assert cg.cell(summary, "plain_rps", 0) == "200 (100-300)"
    assert cg.cell(summary, "cold_start_s", 2) == "1.00"  # no spread to show
    assert cg.cell(summary, "import_s", 2) == "-"  # not measured
    assert summary["plain_upstream_matches"] is False  # one run that did not match is reported
    report = {
        "summary": {"router": summary},
        "labels": {"router": "tier-router", "floor": "floor"},
        "gateways": ["floor", "router"],
        "unavailable": {"floor": "did not start: exited with 1\ntraceback"},
    }
    table = cg.markdown(report)
    assert "| floor | SKIPPED: did not start: exited with 1 |" in table
    assert "traceback" not in table
    assert "!! router plain: the upstream did not see as many requests as were served" in table


def test_the_documented_commands_are_the_scripts() -> None:
    """docs/comparison.md's command parses, and bench/README.md installs what the script looks for."""
    page = (ROOT / "docs" / "comparison.md").read_text(encoding="utf-8")
    block = page.split("```sh\n", 1)[1].split("```", 1)[0]
    words = block.split("#", 1)[0].split()
    assert words[:2] == [".venv/bin/python", "bench/compare_gateways.py"]
    assert cg.parse_args(words[2:]).runs == 3
    readme = (ROOT / "bench" / "README.md").read_text(encoding="utf-8")
    assert f"{cg.LITELLM_VENV}/bin/pip install 'litellm[proxy]'" in readme
    assert f"mkdir -p {cg.PORTKEY_DIR} && cd {cg.PORTKEY_DIR}" in readme
    pin = "'overrides.@hono/node-server=1.13.5'"
    assert pin in readme
    assert pin in cg.PORTKEY_INSTALL
