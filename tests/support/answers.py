"""Answers and requests for validator tests: OpenAI `chat.completion` bodies with any number
of choices (text, content parts, tool calls, refusals) read through `Reply.of`, and request
bodies with a response format or tools read through `Ask.of` — the way the router reads them."""

from __future__ import annotations

import json
from typing import Any

from tier_router.validators import Ask, Reply


def message(
    text: Any = "Hello there",
    *,
    calls: list[tuple[str, Any]] | None = None,
    refusal: str | None = None,
) -> dict[str, Any]:
    """An assistant message; `calls`: (name, arguments) pairs — arguments as given when a
    string, else JSON-encoded."""
    out: dict[str, Any] = {"role": "assistant", "content": text, "refusal": refusal}
    if calls:
        out["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
            }
            for i, (name, args) in enumerate(calls)
        ]
    return out


def completion(*messages: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": i, "message": m, "finish_reason": "tool_calls" if m.get("tool_calls") else finish}
            for i, m in enumerate(messages)
        ],
    }


def reply(*texts: Any, **fields: Any) -> Reply:
    """A reply with one choice per text (`fields` go to every message)."""
    return Reply.of(completion(*(message(t, **fields) for t in texts or ("Hello there",))))


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": "Hi"}], **fields}


def json_ask(schema: Any = None, *, strict: bool = True) -> Ask:
    """`response_format` json_schema with `schema`, or json_object when `schema` is None."""
    if schema is None:
        return Ask.of(request(response_format={"type": "json_object"}))
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "strict": strict, "schema": schema}}
    return Ask.of(request(response_format=fmt))


def tools_ask(**tools: Any) -> Ask:
    """`tools`: name → its parameters schema (None: the tool gives none)."""
    specs = []
    for name, params in tools.items():
        fn: dict[str, Any] = {"name": name, "description": f"{name} tool"}
        if params is not None:
            fn["parameters"] = params
        specs.append({"type": "function", "function": fn})
    return Ask.of(request(tools=specs))
