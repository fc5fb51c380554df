"""`must_match` / `must_not_match`: an RE2 pattern searched anywhere in the answer's text.

`{must_match: '(?s)^\\s*\\{'}` or `{must_match: {pattern: 'summary:', ignore_case: true}}`.
Compiled at load (a pattern RE2 rejects fails the rules file with RE2's reason); RE2 runs in
time linear in the answer, whatever the pattern. A choice with tool calls and no text is
searched like any other (its text is empty). `must_not_match` decides early on a held stream
as soon as the pattern is found (unless the match touches the end of the text so far, where
more text could undo it — `$`, `\\b`). Reasons never quote the pattern's match.
"""

from __future__ import annotations

from typing import Any, Self

from tier_router.validators import options as opts
from tier_router.validators import regex
from tier_router.validators.base import Ask, Choice, Validator


class PatternValidator(Validator):
    def __init__(self, pattern: str, ignore_case: bool = False) -> None:
        super().__init__()
        self.pattern = pattern
        self.ignore_case = ignore_case
        self.regex = regex.compile_pattern(pattern, ignore_case)

    @classmethod
    def configure(cls, options: Any) -> Self:
        if isinstance(options, str):
            return cls(opts.string(options, "pattern"))
        if options is None or options is True:
            raise ValueError(f"{cls.kind} needs a pattern: {{{cls.kind}: 'regex'}}")
        given = opts.mapping(cls.kind, options, ("pattern", "ignore_case"))
        if "pattern" not in given:
            raise ValueError(f"{cls.kind} needs a pattern: {{{cls.kind}: {{pattern: 'regex'}}}}")
        ignore_case = opts.boolean(given.get("ignore_case", False), "ignore_case")
        return cls(opts.string(given["pattern"], "pattern"), ignore_case)


class MustMatch(PatternValidator):
    kind = "must_match"

    def check(self, choice: Choice, ask: Ask) -> str | None:
        if regex.search(self.regex, choice.text) is None:
            return "the answer does not match the required pattern"
        return None


class MustNotMatch(PatternValidator):
    kind = "must_not_match"

    def check(self, choice: Choice, ask: Ask) -> str | None:
        if regex.search(self.regex, choice.text) is not None:
            return "the answer matches a forbidden pattern"
        return None

    def early(self, text: str, ask: Ask) -> str | None:
        found = regex.search(self.regex, text)
        if found is not None and found.end() < len(text):
            return "the answer matches a forbidden pattern"
        return None
