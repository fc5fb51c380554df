"""What a stream has told the client so far, as far as tolerance and recovery need to know.

`StreamState.observe` sees every chunk the client is sent (after scrubbing), and keeps:
- which choices have sent their `finish_reason`: once every choice has, the answer is complete,
  and a stream that then closes without `[DONE]` (or is cut, or stalls) is not a failure;
- the text of choice 0 (for `n == 1`): what a recovery sends the next candidate as a prefill;
- whether anything but text was sent (tool calls, reasoning, a refusal): such a stream is
  never recovered, so no broken tool-call arguments ever look complete.

One state lives as long as the client's stream, across a recovery: the second candidate's
chunks finish the choices the first one started.
"""

from __future__ import annotations

from typing import Any

OTHER_FIELDS = ("tool_calls", "function_call", "reasoning_content", "reasoning", "refusal")
"""Delta fields a recovery cannot continue (only plain text can be prefilled)."""


class StreamState:
    __slots__ = ("choices", "chunk_id", "finished", "not_text", "parts", "recovered", "recoveries")

    def __init__(self, choices: int = 1) -> None:
        self.choices = choices
        """How many choices the request asked for (`n`)."""
        self.finished: set[Any] = set()
        """Indexes of the choices that sent a `finish_reason`."""
        self.parts: list[str] = []
        """Choice 0's text, as sent."""
        self.not_text = False
        """Something other than text was sent: tool calls, reasoning, a refusal, choice > 0."""
        self.recoveries = 0
        self.chunk_id: Any = None
        """The first chunk's id: a recovered stream's chunks keep it."""
        self.recovered: str | None = None
        """How the stream was recovered, for the log line: "prefill" or "regenerate"."""

    def observe(self, chunk: dict[str, Any]) -> None:
        """Note one chunk the client is sent. Never raises: a malformed chunk (forwarded as is)
        marks the stream as not recoverable."""
        if self.chunk_id is None:
            self.chunk_id = chunk.get("id")
        choices = chunk.get("choices")
        if not choices:
            return
        try:  # the common chunk first: one choice, index 0, a delta of text only, not the last
            (choice,) = choices
            delta = choice["delta"]
            if len(delta) == 1 and choice["finish_reason"] is None and choice["index"] == 0:
                text = delta["content"]
                if text.__class__ is str:
                    if text:
                        self.parts.append(text)
                    return
        except (LookupError, TypeError, ValueError):
            pass
        try:
            for choice in choices:
                delta = choice.get("delta")
                index = choice.get("index", 0)
                if delta:
                    text = delta.get("content")
                    if text:
                        if index == 0 and text.__class__ is str:
                            self.parts.append(text)
                        else:
                            self.not_text = True
                    if (len(delta) > 1 or text is None) and any(delta.get(f) for f in OTHER_FIELDS):
                        self.not_text = True
                if choice.get("finish_reason"):
                    self.finished.add(index)
        except (AttributeError, TypeError):
            self.not_text = True

    def observe_text(self, chunk: dict[str, Any], text: str) -> None:
        """`observe` for the common chunk (`stream.text_delta`), whose text is `text`."""
        if self.chunk_id is None:
            self.chunk_id = chunk.get("id")
        if text:
            self.parts.append(text)

    @property
    def complete(self) -> bool:
        """Every choice asked for has sent its `finish_reason`."""
        return len(self.finished) >= self.choices

    @property
    def text(self) -> str:
        return "".join(self.parts)


def add_usage(earlier: dict[str, Any] | None, usage: dict[str, Any]) -> dict[str, Any]:
    """Two attempts' usage as one: their token counts added."""
    if not earlier:
        return usage
    total = dict(usage)
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        a, b = earlier.get(name), usage.get(name)
        if type(a) is int and type(b) is int:
            total[name] = a + b
    return total
