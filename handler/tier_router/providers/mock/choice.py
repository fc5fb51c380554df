"""One choice of a mock answer: text, or one tool call, and why it ended."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tier_router.routing.tokens import estimate_tokens


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Choice:
    content: str | None
    call: Call | None = None
    finish_reason: str = "stop"
    legacy: bool = False
    """The call answers the deprecated `functions`: `message.function_call`, not `tool_calls`."""

    @property
    def text(self) -> str:
        """What the completion tokens count: the content, or the call's name and arguments."""
        return self.call.name + self.call.arguments if self.call else self.content or ""

    def tokens(self) -> int:
        return estimate_tokens(self.text)

    def cut(self, limit: int) -> Choice:
        """Cut to `limit` tokens (finish_reason "length") when longer; else unchanged."""
        if self.tokens() <= limit:
            return self
        kept = cut_to_tokens(self.text, limit)
        if self.call:
            call = replace(self.call, arguments=kept[len(self.call.name) :])
            return replace(self, call=call, finish_reason="length")
        return replace(self, content=kept, finish_reason="length")

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": None}
        if self.call and self.legacy:
            message["function_call"] = {"name": self.call.name, "arguments": self.call.arguments}
        elif self.call:
            message["tool_calls"] = [
                {
                    "id": self.call.id,
                    "type": "function",
                    "function": {"name": self.call.name, "arguments": self.call.arguments},
                }
            ]
        return message

    def as_dict(self, index: int) -> dict[str, Any]:
        return {
            "index": index,
            "message": self.message(),
            "finish_reason": self.finish_reason,
            "logprobs": None,
        }


def cut_to_tokens(text: str, limit: int) -> str:
    """The longest prefix of `text` whose estimate is at most `limit` tokens (the estimate
    grows with the prefix, so a binary search finds it)."""
    if estimate_tokens(text) <= limit:
        return text
    low, high = 0, len(text)  # estimate(text[:low]) <= limit < estimate(text[:high])
    while high - low > 1:
        middle = (low + high) // 2
        if estimate_tokens(text[:middle]) <= limit:
            low = middle
        else:
            high = middle
    return text[:low]
