"""A per-request script in front of `tests.support.fake_upstream`'s fake provider.

The fake's fault config is global (``POST /_control``), so concurrent requests cannot each
ask for different behaviour. This wrapper reads directives from the request itself — written
into the user message, which the router forwards untouched — and applies them around the
fake:

    [delay=1.5]     wait 1.5 s before answering (waking early if the router hangs up)
    [drip=0.05]     once the answer starts, wait 0.05 s before each further body chunk
    [status=500]    answer with that HTTP status and an OpenAI error body
    [tag=abc123]    remember that a request with this tag arrived (see `seen`)
    [seq:m-1=429:ra1,ok]
                    with [tag=...]: the requests for provider model `m-1` under this tag
                    answer in turn: a 429 with `retry-after: 1`, then the fake's answer; the
                    last step repeats (see `STEP` for the steps; `counts` counts them)

Everything else is the fake's own behaviour (deterministic replies, usage, stream shapes).
The counters are read from the test's thread while uvicorn's loop updates them: plain ints
and a set, good enough for polling.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.support.fake_upstream import pause

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DIRECTIVE = re.compile(rb"\[(delay|drip|status|tag)=([A-Za-z0-9._-]+)\]")
SEQUENCE = re.compile(rb"\[seq:([A-Za-z0-9._-]+)=([A-Za-z0-9.:,_-]+)\]")
STEP = """A `seq` step: `ok` (the fake answers), or `<status>` followed by any of `:ra<seconds>`
(a `retry-after` header), `:ms<millis>` (`retry-after-ms`) and `:<body>` (one of `ERROR_BODIES`;
otherwise a generic OpenAI error)."""
ERROR_BODIES: dict[str, dict[str, Any]] = {
    # OpenAI's context-window refusal (status 400), with its error.code.
    "ctx": {
        "error": {
            "message": "This model's maximum context length is 8192 tokens. However, your messages "
            "resulted in 9000 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    },
    # vLLM's: a top-level message, no error.code.
    "vllm": {
        "object": "error",
        "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 "
        "tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the "
        "messages or completion.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    },
    # A content-policy refusal: the client's, never a reason to try another model.
    "policy": {
        "error": {
            "message": "Your request was rejected as a result of our safety system.",
            "type": "invalid_request_error",
            "param": None,
            "code": "content_policy_violation",
        }
    },
}


def directives(body: bytes) -> dict[str, str]:
    return {m.group(1).decode(): m.group(2).decode() for m in DIRECTIVE.finditer(body)}


class ScriptedUpstream:
    """ASGI wrapper: chat requests get their directives applied; everything else passes through."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests = 0  # chat requests received
        self.in_flight = 0
        self.disconnects = 0  # the router hung up before we finished
        self.tags: set[str] = set()
        self.arrivals: list[tuple[float, int]] = []
        """Each chat request: (time.monotonic() at arrival, requests in flight counting it)."""
        self.counts: dict[tuple[str, str], int] = {}
        """Requests per (tag, provider model id) of the requests that carried a `seq`."""

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            await self.inner(scope, receive, send)
            return
        parts = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(parts)
        script = directives(body)
        self.requests += 1
        if "tag" in script:
            self.tags.add(script["tag"])
        self.in_flight += 1
        self.arrivals.append((time.monotonic(), self.in_flight))
        try:
            await self._answer(scope, receive, send, body, script)
        finally:
            self.in_flight -= 1

    async def _answer(
        self, scope: Any, receive: Receive, send: Send, body: bytes, script: dict[str, str]
    ) -> None:
        if "delay" in script and await pause(receive, float(script["delay"])):
            self.disconnects += 1
            # Nobody will read it (the server drops it), but uvicorn then does not log an
            # "ASGI callable returned without completing response" error for it.
            await send({"type": "http.response.start", "status": 499, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        step = self._step(body, script)
        if step is None and "status" in script:
            step = script["status"]
        if step is not None and step != "ok":
            await self._refuse(send, step)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        out = send
        if "drip" in script:
            gap = float(script["drip"])
            chunks = 0

            async def out(message: Message) -> None:
                nonlocal chunks
                if message["type"] == "http.response.body" and message.get("body"):
                    chunks += 1
                    if chunks > 1 and await pause(receive, gap):
                        self.disconnects += 1
                        raise ConnectionAbortedError("scripted upstream: the router hung up")
                await send(message)

        with contextlib.suppress(ConnectionAbortedError):
            await self.inner(scope, replay, out)

    def _step(self, body: bytes, script: dict[str, str]) -> str | None:
        """This request's `seq` step for its model, or None when it has none."""
        if b"[seq:" not in body:
            return None
        model = json.loads(body).get("model")
        for found in SEQUENCE.finditer(body):
            if found.group(1).decode() == model:
                key = (script.get("tag", ""), model)
                seen = self.counts[key] = self.counts.get(key, 0) + 1
                steps = found.group(2).decode().split(",")
                return steps[min(seen, len(steps)) - 1]
        return None

    @staticmethod
    async def _refuse(send: Send, step: str) -> None:
        status, *options = step.split(":")
        payload: dict[str, Any] = {
            "error": {"message": "scripted failure", "type": "server_error", "param": None, "code": None}
        }
        head = [(b"content-type", b"application/json")]
        for option in options:
            if option.startswith("ra"):
                head.append((b"retry-after", option[2:].encode()))
            elif option.startswith("ms"):
                head.append((b"retry-after-ms", option[2:].encode()))
            else:
                payload = ERROR_BODIES[option]
        data = json.dumps(payload).encode()
        head.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": int(status), "headers": head})
        await send({"type": "http.response.body", "body": data})
