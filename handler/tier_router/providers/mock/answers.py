"""What the mock answers: a `chat.completion` built from what the request asks for.

- tools (or the deprecated `functions`), `tool_choice` not "none" and the last message not a
  tool result: one call of the named function (else the first), its arguments a value of
  the function's `parameters` schema; content null, finish_reason "tool_calls"
  ("function_call" and `message.function_call` for `functions`).
- `response_format` json_object: `{"answer": ..., "model": ...}`; json_schema: a value of
  the schema (`instance`); else the canned text "[<model> via mock:<host>] You said: ...".
- `n` choices, each a little different; `max_completion_tokens` / `max_tokens` cut each
  longer one (finish_reason "length"); the draw's flaw spoils every choice.
- usage: prompt tokens over messages, tool calls, tools and the schema; completion tokens
  over what each choice returned.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from tier_router.providers.mock.choice import Call, Choice
from tier_router.providers.mock.flaws import draw, spoil
from tier_router.providers.mock.instance import instance
from tier_router.providers.mock.judge import SHALLOW, verdict
from tier_router.providers.mock.options import Flaw, MockOptions
from tier_router.routing.tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD_TOKENS, estimate_tokens

TOOL_RESULT_ROLES = ("tool", "function")
IMAGE_PARTS = ("image_url", "input_image", "image")


@dataclass(frozen=True, slots=True)
class Tool:
    """The function the answer calls."""

    name: str
    parameters: Any
    strict: bool
    legacy: bool


def completion(body: dict[str, Any], server: str, options: MockOptions) -> dict[str, Any]:
    """The whole `chat.completion` answering `body` on mock provider `server`."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    model = str(body.get("model"))
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    tool = tool_to_call(body, messages)
    fmt = body.get("response_format") if isinstance(body.get("response_format"), dict) else {}
    wants_json = fmt.get("type") in ("json_object", "json_schema")
    applicable = {Flaw.REFUSAL, Flaw.TRUNCATE}
    if tool:
        applicable.add(Flaw.TOOLS)
    elif wants_json:
        applicable.add(Flaw.JSON)
    fate = draw(messages, server, options, frozenset(applicable))
    limit = token_limit(body)
    prompt = prompt_tokens(body, messages)
    judged = (
        verdict(text_of(messages[-1].get("content"))) if messages and isinstance(messages[-1], dict) else None
    )
    shallow = options.shallow_above_tokens is not None and prompt > options.shallow_above_tokens
    choices = []
    for index in range(n_of(body)):
        if tool:
            choice = tool_call(tool, index, digest)
        elif wants_json:
            choice = Choice(json_answer(fmt, text_answer(messages, model, server, index), model, index))
        elif judged is not None:
            choice = Choice(judged)
        else:
            choice = Choice(text_answer(messages, model, server, index, shallow))
        choice = spoil(choice, fate, tool.parameters if tool else None)
        choices.append(choice if limit is None else choice.cut(limit))
    spent = sum(c.tokens() if limit is None else min(c.tokens(), limit) for c in choices)
    return {
        "id": f"chatcmpl-mock{digest}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [c.as_dict(i) for i, c in enumerate(choices)],
        "usage": {"prompt_tokens": prompt, "completion_tokens": spent, "total_tokens": prompt + spent},
    }


def text_answer(messages: list[Any], model: str, server: str, index: int, shallow: bool = False) -> str:
    who = f"[{model} via mock:{server}" + (f", choice {index + 1}]" if index else "]")
    if shallow:
        who += f" {SHALLOW}"
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    if last.get("role") in TOOL_RESULT_ROLES:
        return f"{who} The tool said: {text_of(last.get('content'))[:200]}"
    user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), {})
    text = text_of(user.get("content")) or "(a message with no text)"
    return f"{who} You said: {text[:200]}"


def json_answer(fmt: dict[str, Any], text: str, model: str, index: int) -> str:
    spec = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else {}
    if fmt.get("type") == "json_schema" and "schema" in spec:
        return json.dumps(instance(spec["schema"], strict=spec.get("strict") is True, variant=index))
    return json.dumps({"answer": text, "model": model})


def tool_to_call(body: dict[str, Any], messages: list[Any]) -> Tool | None:
    """The function to call, or None: no tools, a "none" choice, or a tool result to answer."""
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    if last.get("role") in TOOL_RESULT_ROLES:
        return None
    tools = [
        t["function"]
        for t in body.get("tools") or ()
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    legacy = not tools
    choice = body.get("tool_choice")
    if legacy:
        tools = [f for f in body.get("functions") or () if isinstance(f, dict)]
        choice = body.get("function_call")
    tools = [t for t in tools if isinstance(t.get("name"), str)]
    if not tools or choice == "none":
        return None
    wanted = None
    if isinstance(choice, dict):
        named = choice.get("function") if isinstance(choice.get("function"), dict) else choice
        wanted = named.get("name")
    fn = next((t for t in tools if t["name"] == wanted), tools[0])
    return Tool(fn["name"], fn.get("parameters"), fn.get("strict") is True, legacy)


def tool_call(tool: Tool, index: int, digest: str) -> Choice:
    arguments = instance(tool.parameters, strict=tool.strict, variant=index) if tool.parameters else {}
    call = Call(f"call_mock{digest[:16]}{index}", tool.name, json.dumps(arguments))
    return Choice(None, call, "function_call" if tool.legacy else "tool_calls", tool.legacy)


def n_of(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 128 else 1


def token_limit(body: dict[str, Any]) -> int | None:
    for field in ("max_completion_tokens", "max_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    return None


def prompt_tokens(body: dict[str, Any], messages: list[Any]) -> int:
    """Like `routing.features.measure`: message texts with their overhead, images, tool-call
    history, the tool definitions and a json_schema."""
    tokens = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        images = (
            sum(1 for p in content if isinstance(p, dict) and p.get("type") in IMAGE_PARTS)
            if isinstance(content, list)
            else 0
        )
        tokens += estimate_tokens(text_of(content)) + MESSAGE_OVERHEAD_TOKENS + images * IMAGE_TOKENS
        for key in ("tool_calls", "function_call"):
            if message.get(key):
                tokens += estimate_tokens(json.dumps(message[key], separators=(",", ":")))
    tools = body.get("tools") or body.get("functions")
    if tools:
        tokens += estimate_tokens(json.dumps(tools, separators=(",", ":")))
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        tokens += estimate_tokens(json.dumps(fmt, separators=(",", ":")))
    return tokens


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""
