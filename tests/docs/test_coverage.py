"""Every fenced block of README.md and docs/*.md is checked by a test, or exempt with a reason:
a new block that nobody runs or compares fails here until tests/docs/coverage.py lists it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.docs import exempt_checks
from tests.docs.blocks import ROOT, Block, blocks, following, parse
from tests.docs.coverage import CHECKED, EXEMPT, OUTPUT, RUN_OFFLINE, RUN_ROUTER, YAML

RUNNABLE = {RUN_ROUTER: {"console", "python"}, RUN_OFFLINE: {"console", "sh"}, YAML: {"yaml"}}


def test_every_block_is_listed_once() -> None:
    found = {b.key: b for b in blocks()}
    assert not set(CHECKED) & set(EXEMPT), "a block both checked and exempt"
    unlisted = [str(b) for key, b in found.items() if key not in CHECKED and key not in EXEMPT]
    assert not unlisted, "blocks no test checks (add each to tests/docs/coverage.py):\n" + "\n".join(unlisted)
    stale = [key for key in [*CHECKED, *EXEMPT] if key not in found]
    assert not stale, f"listed blocks that are gone: {stale}"


def test_a_new_block_is_not_covered() -> None:
    """The check above, on a page with one more block: it is found and it is unlisted."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    extra = readme + "\n## Something new\n\n```sh\ntier-router frobnicate\n```\n"
    new = [b for b in parse("README.md", extra) if b.key not in CHECKED and b.key not in EXEMPT]
    assert [b.text for b in new] == ["tier-router frobnicate\n"]


@pytest.mark.parametrize("key", sorted(CHECKED), ids=lambda k: f"{k[0]}:{k[1]}#{k[2]}")
def test_each_listed_block_has_a_checker(key: tuple[str, str, int]) -> None:
    block = next(b for b in blocks(key[0]) if b.key == key)
    how = CHECKED[key]
    if how in RUNNABLE:
        assert block.lang in RUNNABLE[how], f"{block}: {how} runs {RUNNABLE[how]} blocks"
    elif how == OUTPUT:
        before = next(b for b in blocks(key[0]) if b.heading == key[1] and b.ordinal == key[2] - 1)
        assert CHECKED.get(before.key) in (RUN_ROUTER, RUN_OFFLINE)
        assert following(before) == block
        assert block.lang == "text"
    else:
        check_elsewhere(block, how)


def check_elsewhere(block: Block, how: str) -> None:
    path, _, function = how.partition("::")
    source = ROOT / path
    assert source.is_file(), f"{block}: {path} does not exist"
    text = source.read_text(encoding="utf-8")
    assert Path(block.page).name in text, f"{block}: {path} never names {block.page}"
    if function:
        names = {n.name for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef)}
        assert function in names, f"{block}: {path} has no {function}"


@pytest.mark.parametrize("key", sorted(EXEMPT), ids=lambda k: f"{k[0]}:{k[1]}#{k[2]}")
def test_each_exemption_has_a_reason_and_a_check(key: tuple[str, str, int]) -> None:
    exempt = EXEMPT[key]
    assert len(exempt.reason) > 10
    assert callable(getattr(exempt_checks, exempt.check, None)), exempt.check
