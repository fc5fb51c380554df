"""`truncated`: the answer stopped because it ran out of tokens (`finish_reason: length`)."""

from __future__ import annotations

from tier_router.validators.base import Ask, Choice, Validator


class Truncated(Validator):
    kind = "truncated"

    def check(self, choice: Choice, ask: Ask) -> str | None:
        if choice.finish_reason == "length":
            return "the answer was cut off at its token limit (finish_reason: length)"
        return None
