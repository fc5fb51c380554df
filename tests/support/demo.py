"""The demo rules (`rules/local-demo.yaml`) for tests that are not about judging.

The demo judges a random quarter of the cheaper answers (its `quality:` block): a test that
counts log lines, pending tasks or provider calls would see a judgement now and then. Such
tests route by `UNJUDGED_DEMO`, the same file without that block (its golden examples beside it).
"""

from __future__ import annotations

import shutil
import tempfile
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "rules" / "local-demo.yaml"


@cache
def unjudged_demo() -> Path:
    """A copy of the demo rules without `quality:` (written once per test session)."""
    directory = Path(tempfile.mkdtemp(prefix="unjudged-demo-"))
    rules = yaml.safe_load(DEMO.read_text())
    rules.pop("quality", None)
    path = directory / "local-demo.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    shutil.copy(DEMO.with_name("local-demo.examples.yaml"), directory / "local-demo.examples.yaml")
    return path
