"""How an invalid rules file is reported: every `Problem` (where, reason) in one `RulesError`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tier_router.errors import ConfigError


@dataclass(frozen=True)
class Problem:
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" if self.where else self.reason


class RulesError(ConfigError):
    """The rules file is invalid. `problems` lists each one; str() is ready to print."""

    def __init__(self, path: Path | str, problems: list[Problem], kind: str = "rules file") -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: {problem}" for problem in problems]
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        head = f"invalid {kind} {self.path} ({count})"
        super().__init__("\n".join([head, *lines]))


def unknown(kind: str, name: str, known: Iterable[str]) -> str:
    import difflib  # only for a rules file with a problem: not on the init path (docs/coldstart.md)

    names = sorted(known)
    hint = difflib.get_close_matches(name, names, n=1)
    suffix = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown {kind} {name!r} (known: {', '.join(names)}){suffix}"
