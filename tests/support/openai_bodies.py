"""OpenAI chat-completions bodies: a client's request, a provider's answer (for respx to
answer with), and SSE encoded and read back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx

CREATED = 1_700_000_000

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
"""A function tool with a required enum argument."""


def chat_request(text: str = "Say hi", model: str = "auto", **fields: Any) -> dict[str, Any]:
    """A chat-completions request body: one user message."""
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


def usage(prompt: int = 5, completion: int = 2, **details: int) -> dict[str, Any]:
    """OpenAI usage; `details` (e.g. `cached_tokens=...`) become `prompt_tokens_details`."""
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if details:
        out["prompt_tokens_details"] = dict(details)
    return out


def completion(
    text: str = "Hello there",
    model: str = "gpt-a-2025-06-01",
    *,
    usage: dict[str, Any] | bool = True,
    finish: str = "stop",
    **fields: Any,
) -> dict[str, Any]:
    """A `chat.completion` body; `usage`: True for 5 in / 2 out, False for none, or the usage."""
    body: dict[str, Any] = {
        "id": "chatcmpl-upstream-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": _usage_of(usage),
        "system_fingerprint": "fp_upstream",
        **fields,
    }
    if body["usage"] is None:
        del body["usage"]
    return body


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One `chat.completion.chunk` with one choice."""
    return {
        "id": "chatcmpl-stream-1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def chunks(
    pieces: Iterable[str] = ("Hel", "lo"),
    model: str = "gpt-a-2025-06-01",
    *,
    usage: dict[str, Any] | bool = True,
) -> list[dict[str, Any]]:
    """A stream's chunks: the role, one chunk per text piece, the finish, then (`usage` as in
    `completion`) the usage-only chunk."""
    out = [chunk(model, {"role": "assistant", "content": ""})]
    out += [chunk(model, {"content": piece}) for piece in pieces]
    out.append(chunk(model, {}, "stop"))
    final = _usage_of(usage)
    if final is not None:
        out.append({**chunk(model, {}), "choices": [], "usage": final})
    return out


def _usage_of(given: dict[str, Any] | bool) -> dict[str, Any] | None:
    if isinstance(given, bool):
        return usage() if given else None
    return given


def encode_sse(events: Iterable[dict[str, Any] | str | bytes], done: bool = True) -> bytes:
    """Dicts become `data: <json>` events, str become `data: <str>` events, bytes go raw."""
    out = b""
    for event in events:
        if isinstance(event, bytes):
            out += event
        elif isinstance(event, str):
            out += f"data: {event}\n\n".encode()
        else:
            out += b"data: " + json.dumps(event).encode() + b"\n\n"
    if done:
        out += b"data: [DONE]\n\n"
    return out


def sse_response(body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    """A 200 `text/event-stream` response with that body."""
    return httpx.Response(200, headers={"content-type": "text/event-stream", **(headers or {})}, content=body)


def parse_sse(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    payloads = []
    for block in text.split("\n\n"):
        data = [line[len("data: ") :] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            payloads.append("\n".join(data))
    return payloads
