"""A provider whose streams are written by the test, chunk by chunk, and end however the test
says — cleanly with or without `[DONE]`, cut (the connection dropped mid-body), or stalled.

One ASGI app serves several providers at once (`/<side>/v1/chat/completions`, one base URL per
side), and many tests at once: a request names its script with `[script=NAME]` in its user
message, and each side answers that script's replies in order (`Script.add`). Every body the
router sent is kept (`bodies`), so a test can check what a later candidate was asked.

    app = StreamScript()
    app.script("cut", a=[Reply(events=[chunk("Hel"), chunk("lo")], end=Cut)], b=[Reply(...)])
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Generic, TypeVar

PROVIDER_KEY_ENV = "STREAM_SCRIPT_KEY"
Message = dict[str, Any]
ENVELOPE = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "m"}
SCRIPT = re.compile(rb"\[script=([A-Za-z0-9_-]+)\]")
R = TypeVar("R")


class End(Enum):
    DONE = "done"
    """`data: [DONE]`, then the body ends."""
    CLOSE = "close"
    """The body ends cleanly, without `[DONE]`."""
    CUT = "cut"
    """The connection is dropped mid-body (the chunked body never ends)."""
    STALL = "stall"
    """Nothing more is sent until the router hangs up."""


@dataclass
class Reply:
    events: list[str] = field(default_factory=list)
    """Each one `data:` payload (JSON text, or anything at all)."""
    end: End = End.DONE
    status: int = 200
    error: str = "scripted refusal"


def chunk(content: str | None = None, *, finish: str | None = None, role: bool = False, **delta: Any) -> str:
    """An OpenAI chat.completion.chunk as JSON text."""
    d: dict[str, Any] = dict(delta)
    if role:
        d["role"] = "assistant"
    if content is not None:
        d["content"] = content
    choice = {"index": 0, "delta": d, "finish_reason": finish}
    return json.dumps(
        {"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    )


def usage(prompt: int, completion: int) -> str:
    data = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return json.dumps(
        {"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "m", "choices": [], "usage": data}
    )


class ScriptedSides(Generic[R]):
    """Scripts by name, each a list of replies per side (provider), answered in turn (the last
    one repeats); every body the router sent is kept per (script, side). Shared by the scripted
    providers of the tests (this one and `answer_script.AnswerScript`)."""

    def __init__(self) -> None:
        self.scripts: dict[str, dict[str, list[R]]] = {}
        self.bodies: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def script(self, name: str, **sides: list[R]) -> None:
        self.scripts[name] = {side: list(replies) for side, replies in sides.items()}

    def calls(self, name: str, side: str) -> list[dict[str, Any]]:
        return self.bodies.get((name, side), [])

    async def next_reply(
        self, scope: Any, receive: Callable[[], Awaitable[Message]], missing: R
    ) -> tuple[dict[str, Any], R]:
        """Read one request: its body, and the reply its script gives its side (`missing` when
        there is none)."""
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(parts)
        side = scope["path"].strip("/").split("/")[0]
        found = SCRIPT.search(raw)
        name = found.group(1).decode() if found else ""
        body = json.loads(raw)
        self.bodies.setdefault((name, side), []).append(body)
        replies = self.scripts.get(name, {}).get(side) or [missing]
        return body, replies.pop(0) if len(replies) > 1 else replies[0]


class StreamScript(ScriptedSides["Reply"]):
    async def __call__(self, scope: Any, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "http":
            return
        _, reply = await self.next_reply(scope, receive, Reply(status=500, error="no script"))
        if reply.status != 200:
            error = {"message": reply.error, "type": "invalid_request_error", "param": None, "code": None}
            body = json.dumps({"error": error}).encode()
            head = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": reply.status, "headers": head})
            await send({"type": "http.response.body", "body": body})
            return
        head = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        for event in reply.events:
            await send(
                {"type": "http.response.body", "body": f"data: {event}\n\n".encode(), "more_body": True}
            )
            await asyncio.sleep(0.005)  # one read per event, as a real provider sends them
        if reply.end is End.DONE:
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        elif reply.end is End.CLOSE:
            await send({"type": "http.response.body", "body": b""})
        elif reply.end is End.CUT:
            raise ConnectionAbortedError("scripted cut")  # uvicorn drops the connection
        else:
            while (await receive())["type"] != "http.disconnect":
                pass


# -- the real router in front of it ----------------------------------------------------------


@dataclass
class StreamStack:
    app: StreamScript
    router: Any  # tests.support.router_process.Router

    def line(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The access-log line of one request (written once its stream has been settled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.router.request_lines():
                if record.get("request_id") == request_id:
                    return dict(record)
            time.sleep(0.02)
        raise AssertionError(f"no log line for {request_id}")


def stream_rules(url: str, *, stall: float = 2.0, **sections: Any) -> dict[str, Any]:
    """Providers `a` and `b` (sides of one StreamScript), tier `main` = first (a), second (b), and
    tier `solo` = first only; `sections` are added at the top level (e.g. `routing`)."""
    timeouts = {"first_token": 3.0, "stall": stall}
    return {
        "version": 1,
        "providers": {
            side: {
                "kind": "openai",
                "base_url": f"{url}/{side}/v1",
                "api_key_env": PROVIDER_KEY_ENV,
                "timeouts": timeouts,
            }
            for side in ("a", "b")
        },
        "models": {
            "first": {"provider": "a", "id": "a-1", "price": {"input": 1, "output": 4}},
            "second": {"provider": "b", "id": "b-1", "price": {"input": 1, "output": 4}},
        },
        "tiers": {"main": ["first", "second"], "solo": ["first"]},
        "default_tier": "main",
        "budgets": {"daily_usd": 100},
        **sections,
    }


@contextlib.contextmanager
def stream_stack(workdir: Path, **options: Any) -> Iterator[StreamStack]:
    from tests.support.loopback import run_uvicorn_in_thread
    from tests.support.router_process import running_router
    from tests.support.stack import PROVIDER_KEY, ROUTER_KEY, sqlite_url

    app = StreamScript()
    with run_uvicorn_in_thread(app) as url:
        rules = stream_rules(url, **options)
        env = {PROVIDER_KEY_ENV: PROVIDER_KEY}
        with running_router(workdir, rules, key=ROUTER_KEY, store_url=sqlite_url(workdir), env=env) as router:
            yield StreamStack(app, router)
