"""Every YAML block of docs/quality.md is a valid rules file, or a valid part of the page's
complete example (its first block): a documented syntax that does not load is a broken promise."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tier_router.routing.loader import parse_rules

PAGE = Path(__file__).resolve().parents[2] / "docs" / "quality.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), flags=re.S)


def with_part(base: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """The complete example with a part's sections: mappings merged, a part's rules replacing
    the example's (and its experiments too: each must be used by a rule)."""
    merged = dict(base)
    if "rules" in part:
        merged.pop("experiments", None)
    for section, value in part.items():
        if isinstance(value, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **value}
        else:
            merged[section] = value
    return merged


def test_the_page_has_a_complete_example_and_parts() -> None:
    assert len(BLOCKS) >= 5


def test_the_complete_example_loads() -> None:
    rules = parse_rules(yaml.safe_load(BLOCKS[0]), "docs/quality.md")
    assert rules.cascades["budget"].to == "premium"
    assert set(rules.spec.tiers) == {"budget", "standard", "premium"}


@pytest.mark.parametrize("block", range(1, len(BLOCKS)))
def test_every_part_loads_into_the_example(block: int) -> None:
    base = yaml.safe_load(BLOCKS[0])
    parse_rules(with_part(base, yaml.safe_load(BLOCKS[block])), f"docs/quality.md block {block + 1}")
