"""`min_length` / `max_length`: the answer's text, in characters (code points).

`{min_length: 20}`: at least 20 characters once surrounding whitespace is stripped (padding
does not count). A choice with tool calls passes min_length whatever its text: a tool call is
an answer. `{max_length: 4000}`: at most 4000 characters of text (tool calls not counted);
decided early on a held stream as soon as the text is longer.
"""

from __future__ import annotations

from typing import Any, Self

from tier_router.validators import options as opts
from tier_router.validators.base import Ask, Choice, Validator

MAX_CHARS = 10_000_000


def limit(kind: str, options: Any) -> int:
    if isinstance(options, dict):
        raise ValueError(f"{kind} takes a number of characters ({{{kind}: 20}}), not a mapping")
    if options is None:
        raise ValueError(f"{kind} needs a number of characters: {{{kind}: 20}}")
    return opts.integer(options, kind, minimum=0, maximum=MAX_CHARS)


class MinLength(Validator):
    kind = "min_length"

    def __init__(self, chars: int) -> None:
        super().__init__()
        self.chars = chars

    @classmethod
    def configure(cls, options: Any) -> Self:
        return cls(limit(cls.kind, options))

    def check(self, choice: Choice, ask: Ask) -> str | None:
        if choice.tool_calls:
            return None
        chars = len(choice.text.strip())
        if chars < self.chars:
            return f"the answer has {chars} characters, fewer than {self.chars}"
        return None


class MaxLength(Validator):
    kind = "max_length"

    def __init__(self, chars: int) -> None:
        super().__init__()
        self.chars = chars

    @classmethod
    def configure(cls, options: Any) -> Self:
        return cls(limit(cls.kind, options))

    def check(self, choice: Choice, ask: Ask) -> str | None:
        return self.early(choice.text, ask)

    def early(self, text: str, ask: Ask) -> str | None:
        if len(text) > self.chars:
            return f"the answer has {len(text)} characters, more than {self.chars}"
        return None
