"""The fenced code blocks of README.md and docs/*.md, and how a documented command and its
documented output are compared with a real run.

A block is named by its page, the heading it sits under and its place among that heading's
blocks (`Block.key`): what the coverage table (`tests/docs/coverage.py`) lists. Fences may be
indented (a block inside a numbered list); the indentation is removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_PORT = 8080
"""The port the docs show (`tier-router serve`'s default); rewritten to the test router's."""

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


@dataclass(frozen=True)
class Block:
    page: str
    """Relative to the repository root: "README.md", "docs/rules.md"."""
    heading: str
    """The text of the nearest heading above the block ("" before the first)."""
    ordinal: int
    """1 for the heading's first block, 2 for its second, ..."""
    lang: str
    """The fence's info string ("" for a bare fence)."""
    line: int
    text: str

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.page, self.heading, self.ordinal)

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.heading!r} #{self.ordinal}, ```{self.lang})"


def pages() -> list[str]:
    return ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


def parse(page: str, text: str) -> list[Block]:
    found: list[Block] = []
    heading = ""
    counts: dict[str, int] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            title = HEADING.match(lines[i])
            if title:
                heading = title.group(2)
            i += 1
            continue
        indent, start = match.group("indent"), i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        assert i < len(lines), f"{page}:{start + 1}: a fence that is never closed"
        i += 1
        counts[heading] = counts.get(heading, 0) + 1
        text_ = "\n".join(body) + "\n"
        found.append(Block(page, heading, counts[heading], match.group("lang"), start + 1, text_))
    return found


def blocks(page: str | None = None) -> list[Block]:
    chosen = [page] if page else pages()
    return [b for p in chosen for b in parse(p, (ROOT / p).read_text(encoding="utf-8"))]


def block(page: str, heading: str, ordinal: int = 1) -> Block:
    for b in blocks(page):
        if b.key == (page, heading, ordinal):
            return b
    raise LookupError(f"no block #{ordinal} under {heading!r} in {page}")


def following(b: Block) -> Block | None:
    """The block right after `b` under the same heading (its shown output), if any."""
    for other in blocks(b.page):
        if other.heading == b.heading and other.ordinal == b.ordinal + 1:
            return other
    return None


# -- console blocks: `$ command` lines, continuation lines, then the output ------------------


@dataclass(frozen=True)
class Step:
    command: str
    """As shown, continuation backslashes and newlines kept (bash reads it as written)."""
    output: list[str]


def console_steps(text: str) -> list[Step]:
    steps: list[Step] = []
    command: list[str] | None = None
    output: list[str] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            if command is not None:
                steps.append(Step("\n".join(command), output))
            command, output = [line[2:]], []
        elif command is not None and not output and command[-1].endswith("\\"):
            command.append(line)
        elif command is not None:
            output.append(line)
        else:
            raise AssertionError(f"console block text before its first `$ `: {line!r}")
    if command is not None:
        steps.append(Step("\n".join(command), output))
    return steps


def sh_commands(text: str) -> list[str]:
    """An sh block's commands (continuations joined), without comments."""
    commands: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.split("  #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        pending = f"{pending} {line.strip()}" if pending else line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        commands.append(pending)
        pending = ""
    return commands


# -- comparing documented output with real output ---------------------------------------------

VARYING = [
    (re.compile(r"^date: .*$"), "date: <date>"),
    (re.compile(r"^content-length: \d+$"), "content-length: <n>"),
    (re.compile(r"\b[0-9a-f]{20}\b"), "<request-id>"),
    (re.compile(r"chatcmpl-mock[0-9a-f]+"), "chatcmpl-mock<id>"),
    (re.compile(r'"created":\d+'), '"created":<ts>'),
]


def normalise(line: str) -> str:
    """A line with what differs between runs (dates, ids, lengths) replaced by placeholders."""
    line = line.rstrip()
    for pattern, replacement in VARYING:
        line = pattern.sub(replacement, line)
    return line


def same_output(shown: list[str], real: list[str]) -> str | None:
    """None when the documented lines are the real ones (normalised); a shown line `...`
    stands for any number of real lines. Otherwise, what differs."""
    want = [normalise(x) for x in shown]
    got = [normalise(x) for x in real]
    while want and not want[-1]:
        want.pop()
    while got and not got[-1]:
        got.pop()
    if _matches(want, got):
        return None
    return "documented:\n" + "\n".join(want) + "\nreal:\n" + "\n".join(got)


def _matches(want: list[str], got: list[str]) -> bool:
    if not want:
        return not got
    if want[0].strip() == "...":
        return any(_matches(want[1:], got[i:]) for i in range(len(got) + 1))
    return bool(got) and want[0] == got[0] and _matches(want[1:], got[1:])
