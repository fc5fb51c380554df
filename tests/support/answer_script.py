"""A provider whose answers are written by the test — plain or streamed, the same answer either
way — so a cascade's validators can be shown exactly the answer a test needs.

One ASGI app serves several providers (`/<side>/v1/chat/completions`); a request names its
script with `[script=NAME]` in its user message, and each side answers that script's replies in
turn (the last one repeats). Bodies the router sent are kept per (script, side).

    app = AnswerScript()
    app.script("bad-json", cheap=[Answer("{not json")], good=[Answer('{"ok": true}')])
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.stream_script import Message, ScriptedSides

PROVIDER_KEY_ENV = "ANSWER_SCRIPT_KEY"


@dataclass
class Answer:
    content: str | None = "fine"
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    """(function name, arguments text)."""
    finish: str = "stop"
    prompt_tokens: int = 10
    completion_tokens: int = 5
    status: int = 200
    choices: int = 1
    """Copies of the answer (`n`); `others` replaces the content of choices after the first."""
    others: str | None = None
    piece: int = 4
    """Characters per streamed content delta."""
    pause_s: float = 0.005
    """Between streamed events (a real provider's reads)."""
    delay_s: float = 0.0
    """Before the response starts (a slow provider: time for a client to leave)."""

    def completion(self, model: str) -> dict[str, Any]:
        choices = []
        for index in range(self.choices):
            message: dict[str, Any] = {"role": "assistant", "content": self._content(index)}
            if self.tool_calls:
                message["tool_calls"] = [
                    {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
                    for i, (n, a) in enumerate(self.tool_calls)
                ]
            choices.append({"index": index, "message": message, "finish_reason": self.finish})
        return {
            "id": "chatcmpl-a",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": choices,
            "usage": self.usage(),
        }

    def usage(self) -> dict[str, int]:
        p, c = self.prompt_tokens, self.completion_tokens
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def _content(self, index: int) -> str | None:
        return self.others if index and self.others is not None else self.content

    def events(self, model: str) -> list[dict[str, Any]]:
        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": index, "delta": delta, "finish_reason": finish}
            return {
                "id": "chatcmpl-a",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [choice],
            }

        out = []
        for index in range(self.choices):
            out.append(chunk(index, {"role": "assistant", "content": ""}))
            text = self._content(index) or ""
            out += [
                chunk(index, {"content": text[i : i + self.piece]}) for i in range(0, len(text), self.piece)
            ]
            for i, (name, arguments) in enumerate(self.tool_calls):
                head = {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": name}}
                out.append(
                    chunk(index, {"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
                )
                out += [
                    chunk(
                        index, {"tool_calls": [{"index": i, "function": {"arguments": arguments[j : j + 6]}}]}
                    )
                    for j in range(0, len(arguments), 6)
                ]
            out.append(chunk(index, {}, self.finish))
        usage = {"id": "chatcmpl-a", "object": "chat.completion.chunk", "model": model, "choices": []}
        out.append({**usage, "usage": self.usage()})
        return out


class AnswerScript(ScriptedSides[Answer]):
    async def __call__(self, scope: Any, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "http":
            return
        body, answer = await self.next_reply(scope, receive, Answer(status=500))
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if answer.status != 200:
            error = {
                "error": {"message": "scripted failure", "type": "server_error", "param": None, "code": None}
            }
            await _send(send, answer.status, b"application/json", json.dumps(error).encode())
            return
        model = str(body.get("model"))
        if not body.get("stream"):
            await _send(send, 200, b"application/json", json.dumps(answer.completion(model)).encode())
            return
        head = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        for event in answer.events(model):
            data = f"data: {json.dumps(event)}\n\n".encode()
            await send({"type": "http.response.body", "body": data, "more_body": True})
            await asyncio.sleep(answer.pause_s)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _send(send: Any, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]}
    )
    await send({"type": "http.response.body", "body": body})


# -- the real router in front of it ----------------------------------------------------------

PRICES = {
    "cheap": {"input": 1, "output": 4},
    "mid": {"input": 2, "output": 8},
    "good": {"input": 10, "output": 40},
}


def cost(side: str, answer: Answer) -> int:
    """What `answer` costs on `side`'s model, in micro-dollars (prices are USD per 1M tokens)."""
    price = PRICES[side]
    return answer.prompt_tokens * price["input"] + answer.completion_tokens * price["output"]


def answer_rules(url: str, **sections: Any) -> dict[str, Any]:
    """Providers cheap, mid and good (sides of one AnswerScript), one model each; tiers `budget`
    (cheap) → `standard` (mid) → `premium` (good), `sections` added at the top level."""
    return {
        "version": 1,
        "providers": {
            side: {
                "kind": "openai",
                "base_url": f"{url}/{side}/v1",
                "api_key_env": PROVIDER_KEY_ENV,
                "timeouts": {"first_token": 5.0, "stall": 5.0},
                "retry": {"max_attempts": 1},
            }
            for side in PRICES
        },
        "models": {
            side: {"provider": side, "id": f"{side}-1", "price": price} for side, price in PRICES.items()
        },
        "tiers": {"budget": ["cheap"], "standard": ["mid"], "premium": ["good"]},
        "default_tier": "budget",
        "budgets": {"daily_usd": 100},
        **sections,
    }


@dataclass
class AnswerStack:
    app: AnswerScript
    router: Any  # tests.support.router_process.Router

    def line(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.router.request_lines():
                if record.get("request_id") == request_id:
                    return dict(record)
            time.sleep(0.02)
        raise AssertionError(f"no log line for {request_id}")


@contextlib.contextmanager
def answer_stack(
    workdir: Path,
    rules: Callable[[str], dict[str, Any]],
    store_url: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[AnswerStack]:
    """The real router (`tier-router serve`, SQLite store unless `store_url`, logging on) in
    front of an AnswerScript; `rules(url)` builds its rules file."""
    from tests.support.loopback import run_uvicorn_in_thread
    from tests.support.router_process import running_router
    from tests.support.stack import PROVIDER_KEY, ROUTER_KEY, sqlite_url, store_env

    app = AnswerScript()
    with run_uvicorn_in_thread(app) as url:
        store = store_url or sqlite_url(workdir)
        full_env = {PROVIDER_KEY_ENV: PROVIDER_KEY, **store_env(store), **(env or {})}
        with running_router(workdir, rules(url), key=ROUTER_KEY, store_url=store, env=full_env) as router:
            yield AnswerStack(app, router)
