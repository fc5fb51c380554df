"""A mock completion as OpenAI's server-sent events.

Per choice: a first delta with the role (and, for a tool call, its index, id, type and
function name with empty arguments), then the content word by word or the arguments in
pieces, then an empty delta with the choice's finish_reason. With n > 1 the choices'
deltas interleave, each chunk naming its choice's index. `stream_options.include_usage`
adds the usage-only chunk (no choices) before `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from itertools import zip_longest
from typing import Any

import httpx

ARGUMENT_PIECE = 16
"""Characters of tool-call arguments per delta."""


class SSEStream(httpx.AsyncByteStream):
    def __init__(self, completion: dict[str, Any], include_usage: bool, latency: float) -> None:
        self.completion = completion
        self.include_usage = include_usage
        self.delay = latency / 10

    async def __aiter__(self) -> AsyncIterator[bytes]:
        c = self.completion
        base = {
            "id": c["id"],
            "object": "chat.completion.chunk",
            "created": c["created"],
            "model": c["model"],
        }
        per_choice = [list(deltas(choice)) for choice in c["choices"]]
        for step, row in enumerate(zip_longest(*per_choice)):
            for choice in row:
                if choice is None:
                    continue
                if self.delay and step:
                    await asyncio.sleep(self.delay)
                yield event({**base, "choices": [choice]})
        if self.include_usage:
            yield event({**base, "choices": [], "usage": c["usage"]})
        yield b"data: [DONE]\n\n"


def deltas(choice: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One choice of a completion as its stream deltas (each a chunk's `choices[0]`)."""
    index, message = choice["index"], choice["message"]

    def part(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        head = {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        yield part({"role": "assistant", "content": None, "tool_calls": [{"index": 0, **head}]})
        for piece in pieces(call["function"]["arguments"]):
            yield part({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    elif message.get("function_call"):
        call = message["function_call"]
        yield part(
            {"role": "assistant", "content": None, "function_call": {"name": call["name"], "arguments": ""}}
        )
        for piece in pieces(call["arguments"]):
            yield part({"function_call": {"arguments": piece}})
    else:
        yield part({"role": "assistant", "content": ""})
        for i, word in enumerate((message.get("content") or "").split(" ")):
            if word or i:
                yield part({"content": word if i == 0 else " " + word})
    yield part({}, choice["finish_reason"])


def pieces(text: str) -> Iterator[str]:
    for start in range(0, len(text), ARGUMENT_PIECE):
        yield text[start : start + ARGUMENT_PIECE]


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
