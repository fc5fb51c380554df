"""Every relative link of README.md and docs/*.md leads to a file of the repository, and a
`#anchor` to a heading of that page (GitHub's heading ids)."""

from __future__ import annotations

import re

import pytest

from tests.docs.blocks import ROOT, pages

LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: str) -> set[str]:
    text = (ROOT / page).read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*?)\s*$", text, flags=re.M)}


def links(page: str) -> list[str]:
    text = (ROOT / page).read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return [x for x in LINK.findall(text) if not re.match(r"[a-z]+:", x)]


@pytest.mark.parametrize("page", pages())
def test_relative_links_resolve(page: str) -> None:
    base = (ROOT / page).parent
    broken = []
    for link in links(page):
        path, _, anchor = link.partition("#")
        target = (base / path).resolve() if path else ROOT / page
        relative = target.relative_to(ROOT).as_posix() if target.is_relative_to(ROOT) else str(target)
        if not target.exists():
            broken.append(link)
            continue
        if anchor and target.suffix == ".md" and anchor not in anchors(relative):
            broken.append(link)
    assert not broken, f"{page}: {broken}"


def test_the_slugs_are_githubs() -> None:
    assert slug("POST /v1/feedback") == "post-v1feedback"
    assert slug("Fallback and streams") == "fallback-and-streams"
    assert slug("Rules are code: `check` and `explain`") == "rules-are-code-check-and-explain"
