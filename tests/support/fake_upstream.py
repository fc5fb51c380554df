"""Fake OpenAI-compatible and Anthropic upstreams with runtime fault injection.

Why a hand-written raw ASGI app: the router's failure handling is only as good as the failures we can
produce on demand - resets, stalls, cut streams, garbage SSE - and the benchmark needs an upstream that
is much cheaper than the proxy under test. Replies are deterministic (derived from the request), so
tests can assert on content and token counts.

Endpoints (paths are matched by suffix, so ``{base_url}/chat/completions`` works for any base path):

- openai:    ``POST .../chat/completions``  (``Authorization: Bearer <any>`` required), and
  ``POST .../embeddings`` (a deterministic unit vector per input; ``encoding_format: base64``;
  ``dimensions``; the faults apply as to chat, the stream ones as ``ok``)
- anthropic: ``POST .../messages``          (``x-api-key`` and ``anthropic-version`` required)
- both:      ``GET .../models``           a model list (same auth; a ``status`` fault answers it too;
  counted in ``model_lists``, not in ``requests``)
- ``POST /_control``  set the fault config (replaces it; ``{"reset": true}`` also clears stats)
- ``GET  /_control``  current fault config
- ``GET  /_stats``    counters by outcome, disconnects, in-flight, last + recent requests seen

Fault config keys (all optional) - see ``Faults``:

``mode``: ``ok`` | ``status`` | ``timeout`` | ``reset`` | ``bad_json`` | ``wrong_content_type`` |
``stream_stall`` | ``stream_cut`` | ``stream_garbage`` | ``drip``;
``status``/``body``/``headers`` for ``status``; ``delay_s`` for ``timeout``/``stream_stall``;
``after_events`` for ``stream_stall``/``stream_cut``/``stream_garbage``; ``drip_ms`` for ``drip``;
``latency_ms`` added before every reply; which requests get the fault: ``failure_rate`` (seeded RNG,
``seed``), ``every`` (every k-th request), ``times`` (only the next n faulted requests).
``ratelimit_remaining`` is echoed in the rate-limit response headers.

``reset`` and ``stream_cut`` misbehave at the TCP level. ASGI has no API for that, so they reach the
connection's transport through uvicorn's ``receive`` (a bound method of its request cycle, which holds
``.transport``): ``reset`` sets ``SO_LINGER 0`` and aborts (the peer sees a RST), ``stream_cut`` closes
gracefully mid-body (the peer sees an incomplete chunked body). Under servers without that attribute,
``reset`` degrades to an exception (the server's 500) and ``stream_cut`` to returning mid-response.

CLI (own process, for benchmarks): ``python -m tests.support.fake_upstream --kind openai --port 9001``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import math
import random
import re
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Kind = Literal["openai", "anthropic"]
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[str, str]]

MODES = frozenset(
    {
        "ok", "status", "timeout", "reset", "bad_json", "wrong_content_type",
        "stream_stall", "stream_cut", "stream_garbage", "drip",
    }
)  # fmt: skip
RECENT_MAX = 20
HTML = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
# A data line whose JSON is cut off - what a torn write or a buggy intermediary looks like.
GARBAGE = {
    "openai": b'data: {"id": "chatcmpl-garbage", "object": "chat.completion.chunk", "choices": [{"del\n\n',
    "anthropic": b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "del\n\n',
}
_PIECE = re.compile(r"\S+\s*")


# --------------------------------------------------------------------------------------------- faults


@dataclass
class Faults:
    """What the fake does to provider requests; replaced wholesale by each ``POST /_control``."""

    mode: str = "ok"
    status: int = 500
    body: Any = None  # None -> the provider's error shape for ``status``
    headers: dict[str, str] = field(default_factory=dict)
    failure_rate: float | None = None  # fraction of requests that get ``mode`` (seeded, reproducible)
    seed: int = 0
    every: int | None = None  # every k-th request (1-based, counted since the last /_control) is faulted
    times: int | None = None  # fault only this many requests, then behave
    delay_s: float = 30.0  # timeout: before headers; stream_stall: after ``after_events`` events
    after_events: int = 1  # stream faults strike after this many events (1 = after role/message_start)
    drip_ms: float = 50.0  # drip: gap between stream events
    latency_ms: float = 0.0  # added before every provider reply, whatever the mode
    ratelimit_remaining: int = 9999

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        """Validate strictly: a typo in a test's fault config must fail loudly, not silently pass."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        faults = cls(**data)
        if faults.mode not in MODES:
            raise ValueError(f"unknown mode {faults.mode!r}; one of {sorted(MODES)}")
        if faults.failure_rate is not None and not 0.0 <= faults.failure_rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        if faults.every is not None and faults.every < 1:
            raise ValueError("every must be >= 1")
        if not isinstance(faults.headers, dict):
            raise ValueError("headers must be an object")
        return faults


# ------------------------------------------------------------------------------------- reply planning


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass
class Reply:
    """Provider-neutral answer, rendered by the OpenAI or Anthropic formatter."""

    id: str
    model: str
    pieces: list[str]  # one "token" each; streamed one per chunk
    tool: ToolCall | None
    finish: Literal["stop", "length", "tool_calls"]
    prompt_tokens: int
    completion_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def count_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: ~4 characters per token."""
    return math.ceil(len(text) / 4) if text else 0


def text_of(content: Any) -> str:
    """Flatten OpenAI content parts / Anthropic content blocks (incl. tool results) to plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(t for t in (text_of(part) for part in content) if t)
    if isinstance(content, dict):
        if isinstance(content.get("text"), str):
            return content["text"]
        if content.get("type") == "tool_result":
            return text_of(content.get("content"))
        if content.get("type") == "tool_use":
            return json.dumps(content.get("input"))
    return ""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _example_args(schema: Any, sample: str) -> dict[str, Any]:
    """Arguments that satisfy a (simple) JSON schema: required properties filled by type."""
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties") or {}
    names = list(schema.get("required") or list(props)[:1])
    by_type: dict[str, Any] = {"integer": 42, "number": 4.2, "boolean": True, "array": [], "object": {}}
    args: dict[str, Any] = {}
    for name in names:
        spec = props.get(name) or {}
        if spec.get("enum"):
            args[name] = spec["enum"][0]
        else:
            args[name] = by_type.get(spec.get("type"), sample)
    return args


def _tool_specs(kind: Kind, body: dict[str, Any]) -> tuple[list[tuple[str, Any]], str | None, bool]:
    """(name, schema) of each tool, the forced tool name if any, and whether tools are disabled."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    specs: list[tuple[str, Any]] = []
    forced: str | None = None
    for tool in tools:
        if kind == "openai":
            fn = tool.get("function") or {}
            specs.append((fn.get("name", "tool"), fn.get("parameters")))
        else:
            specs.append((tool.get("name", "tool"), tool.get("input_schema")))
    if kind == "openai":
        disabled = choice == "none"
        if isinstance(choice, dict):
            forced = (choice.get("function") or {}).get("name")
    else:
        disabled = isinstance(choice, dict) and choice.get("type") == "none"
        if isinstance(choice, dict) and choice.get("type") == "tool":
            forced = choice.get("name")
    return specs, forced, disabled


def _ends_with_tool_result(kind: Kind, messages: list[dict[str, Any]]) -> bool:
    if not messages:
        return False
    last = messages[-1]
    if kind == "openai":
        return last.get("role") == "tool"
    content = last.get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def plan_reply(kind: Kind, name: str, ident: str, body: dict[str, Any]) -> Reply:
    """Decide the answer from the request alone, so equal requests always get equal replies."""
    messages: list[dict[str, Any]] = body["messages"]
    last_user = next((m for m in reversed(messages) if m.get("role") in ("user", "tool")), {})
    said = text_of(last_user.get("content"))
    prefix = " ".join(said.split()[:8]) or "(nothing)"
    prompt_tokens = sum(count_tokens(text_of(m.get("content"))) + 3 for m in messages) + 3
    prompt_tokens += count_tokens(text_of(body.get("system")))
    if body.get("tools"):
        prompt_tokens += count_tokens(json.dumps(body["tools"]))

    specs, forced, disabled = _tool_specs(kind, body)
    tool: ToolCall | None = None
    if specs and not disabled and not _ends_with_tool_result(kind, messages):
        tool_name, schema = next((s for s in specs if s[0] == forced), specs[0])
        args = _example_args(schema, " ".join(said.split()[:5]) or "example")
        tool = ToolCall(
            id=("call_" if kind == "openai" else "toolu_01") + ident[:22],
            name=tool_name,
            arguments=json.dumps(args, separators=(",", ":")),
        )

    if tool is not None:
        # Anthropic models usually say something before a tool_use block; OpenAI's send content null.
        text = f"Let me call {tool.name}." if kind == "anthropic" else ""
    elif _ends_with_tool_result(kind, messages):
        text = f"Hello from {name}. Tool result {_digest(said)} received: {prefix}"
    else:
        text = f"Hello from {name}. Digest {_digest(said)}. You said: {prefix}"
    pieces = _PIECE.findall(text)
    finish: Literal["stop", "length", "tool_calls"] = "tool_calls" if tool else "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if tool is None and isinstance(limit, int) and 0 < limit < len(pieces):
        pieces, finish = pieces[:limit], "length"
    completion_tokens = len(pieces) + (count_tokens(tool.arguments) + 5 if tool else 0)
    return Reply(
        id=ident,
        model=str(body.get("model")),
        pieces=pieces,
        tool=tool,
        finish=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=max(completion_tokens, 1),
    )


def _chunks(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# ------------------------------------------------------------------------------------ OpenAI format


def openai_completion(reply: Reply, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text or None,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool:
        message["tool_calls"] = [
            {
                "id": reply.tool.id,
                "type": "function",
                "function": {"name": reply.tool.name, "arguments": reply.tool.arguments},
            }
        ]
    return {
        "id": "chatcmpl-" + reply.id,
        "object": "chat.completion",
        "created": created,
        "model": reply.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish}],
        "usage": openai_usage(reply),
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }


def openai_usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_events(reply: Reply, created: int, include_usage: bool) -> list[bytes]:
    """``chat.completion.chunk`` SSE: role, content/tool deltas, finish, [usage], [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": "chatcmpl-" + reply.id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": reply.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            out["usage"] = None
        return out

    first: dict[str, Any] = {"role": "assistant", "content": None if reply.tool else "", "refusal": None}
    chunks = [chunk(first)]
    if reply.tool:
        head = {"index": 0, "id": reply.tool.id, "type": "function"}
        chunks.append(
            chunk({"tool_calls": [{**head, "function": {"name": reply.tool.name, "arguments": ""}}]})
        )
        for part in _chunks(reply.tool.arguments):
            chunks.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
    chunks.extend(chunk({"content": piece}) for piece in reply.pieces)
    chunks.append(chunk({}, reply.finish))
    if include_usage:
        usage_chunk = chunk({})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = openai_usage(reply)
        chunks.append(usage_chunk)
    events = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
    events.append(b"data: [DONE]\n\n")
    return events


def openai_error(status: int, message: str | None = None) -> dict[str, Any]:
    kinds = {
        400: ("invalid_request_error", None, "Invalid request."),
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
        404: ("invalid_request_error", "not_found", "Not found."),
        429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
        503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    }
    default = ("server_error", None, "The server had an error while processing your request.")
    err_type, code, text = kinds.get(status, default)
    return {"error": {"message": message or text, "type": err_type, "param": None, "code": code}}


# --------------------------------------------------------------------------------- Anthropic format

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def anthropic_usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": reply.prompt_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }


def anthropic_message(reply: Reply) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    if reply.tool:
        input_ = json.loads(reply.tool.arguments)
        content.append({"type": "tool_use", "id": reply.tool.id, "name": reply.tool.name, "input": input_})
    return {
        "id": "msg_01" + reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": _STOP[reply.finish],
        "stop_sequence": None,
        "usage": anthropic_usage(reply, reply.completion_tokens),
    }


def anthropic_events(reply: Reply) -> list[bytes]:
    """The Messages streaming sequence, one SSE event per list item."""
    out: list[tuple[str, dict[str, Any]]] = []
    start = {**anthropic_message(reply), "content": [], "stop_reason": None}
    start["usage"] = anthropic_usage(reply, 1)
    out.append(("message_start", {"type": "message_start", "message": start}))
    index = 0
    if reply.text:
        block = {"type": "text", "text": ""}
        out.append(
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        )
        out.append(("ping", {"type": "ping"}))
        for piece in reply.pieces:
            delta = {"type": "text_delta", "text": piece}
            out.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        out.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    if reply.tool:
        block = {"type": "tool_use", "id": reply.tool.id, "name": reply.tool.name, "input": {}}
        out.append(
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        )
        if index == 0:
            out.append(("ping", {"type": "ping"}))
        for part in ["", *_chunks(reply.tool.arguments)]:
            delta = {"type": "input_json_delta", "partial_json": part}
            out.append(
                ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            )
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    stop = {"stop_reason": _STOP[reply.finish], "stop_sequence": None}
    usage = {"output_tokens": reply.completion_tokens}
    out.append(("message_delta", {"type": "message_delta", "delta": stop, "usage": usage}))
    out.append(("message_stop", {"type": "message_stop"}))
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in out]


def anthropic_error(status: int, message: str | None = None, request_id: str = "") -> dict[str, Any]:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }
    err_type = kinds.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": err_type, "message": message or err_type.replace("_", " ")}}
    if request_id:
        body["request_id"] = request_id
    return body


# ------------------------------------------------------------------------------------- ASGI plumbing


class _Disconnected(Exception):
    """The client went away while we were reading its request."""


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _start(send: Send, status: int, headers: Headers) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})


async def _body(send: Send, data: bytes, more: bool = False) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def _json(send: Send, status: int, payload: Any, headers: Headers | None = None) -> None:
    data = json.dumps(payload).encode()
    head = [("content-type", "application/json"), ("content-length", str(len(data))), *(headers or [])]
    await _start(send, status, head)
    await _body(send, data)


def _transport(receive: Receive) -> asyncio.Transport | None:
    """uvicorn's ``receive`` is bound to its request cycle, which holds the connection transport."""
    return getattr(getattr(receive, "__self__", None), "transport", None)


async def _settle(receive: Receive) -> None:
    """Let connection_lost run, so uvicorn sees a disconnect rather than an unfinished response."""
    cycle = getattr(receive, "__self__", None)
    for _ in range(50):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0.001)


async def _reset_connection(receive: Receive) -> None:
    transport = _transport(receive)
    if transport is None:
        raise ConnectionResetError("fake upstream: 'reset' needs uvicorn; sending the server's 500 instead")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await _settle(receive)


async def _cut_connection(receive: Receive) -> None:
    transport = _transport(receive)
    if transport is not None:
        transport.close()
        await _settle(receive)


async def pause(receive: Receive, seconds: float) -> bool:
    """Sleep, waking early if the client hangs up. Returns True on disconnect.

    Only call once the request body has been read: uvicorn's ``receive`` then blocks until disconnect.
    """
    if seconds <= 0:
        return False
    waiter = asyncio.ensure_future(receive())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=seconds)
    finally:
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    return bool(done) and waiter.result()["type"] == "http.disconnect"


def _header_dict(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_key, raw_value in scope.get("headers", []):
        key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


# ------------------------------------------------------------------------------------------ the app


class FakeUpstream:
    """Raw ASGI app: one fake provider, its fault config and its stats (single event loop, no locks)."""

    def __init__(self, kind: Kind, *, name: str | None = None, faults: dict[str, Any] | None = None) -> None:
        if kind not in ("openai", "anthropic"):
            raise ValueError(f"kind must be 'openai' or 'anthropic', not {kind!r}")
        self.kind: Kind = kind
        self.name = name or f"fake-{kind}"
        self._suffix = "/chat/completions" if kind == "openai" else "/messages"
        self.reset()
        if faults:
            self.configure(faults)

    # -- control -------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to ``mode: ok`` with empty stats."""
        self.faults = Faults()
        self._rng = random.Random(0)
        self._since_control = 0
        self._faults_left: int | None = None
        self._seq = 0
        self.outcomes: Counter[str] = Counter()
        self.disconnects = 0
        self.in_flight = 0
        self.model_lists = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_MAX)

    def configure(self, data: dict[str, Any]) -> None:
        """Replace the fault config (stats are kept unless ``reset`` is true)."""
        data = dict(data)
        if data.pop("reset", False):
            self.reset()
        self.faults = Faults.from_json(data)
        self._rng = random.Random(self.faults.seed)
        self._since_control = 0
        self._faults_left = self.faults.times

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "requests": self._seq,
            "outcomes": dict(self.outcomes),
            "disconnects": self.disconnects,
            "in_flight": self.in_flight,
            "model_lists": self.model_lists,
            "last_request": self.recent[-1] if self.recent else None,
            "recent": list(self.recent),
        }

    def _pick_fault(self) -> str:
        """Which mode this request gets; deterministic given the config and the request order."""
        f = self.faults
        self._since_control += 1
        selective = f.failure_rate is not None or f.every is not None
        if f.mode == "ok" and not selective:
            return "ok"
        mode = "status" if f.mode == "ok" else f.mode  # a rate without a mode means plain 500s
        if self._faults_left is not None and self._faults_left <= 0:
            return "ok"
        if f.failure_rate is not None and self._rng.random() >= f.failure_rate:
            return "ok"
        if f.every is not None and self._since_control % f.every:
            return "ok"
        if self._faults_left is not None:
            self._faults_left -= 1
        return mode

    # -- ASGI ----------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            body = await _read_body(receive)
        except _Disconnected:
            self.disconnects += 1
            return
        path, method = scope["path"], scope["method"]
        if path == "/_control":
            await self._control(send, method, body)
        elif path == "/_stats" and method == "GET":
            await _json(send, 200, self.stats())
        elif method == "POST" and (path.endswith(self._suffix) or self._embeddings(path)):
            await self._provider(scope, receive, send, body)
        elif method == "GET" and path.endswith("/models"):
            await self._models(scope, send)
        else:
            await self._error(send, 404, f"no route for {method} {path}", self._request_id(0))

    def _embeddings(self, path: str) -> bool:
        return self.kind == "openai" and path.endswith("/embeddings")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _control(self, send: Send, method: str, body: bytes) -> None:
        if method == "POST":
            try:
                data = json.loads(body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("control body must be a JSON object")
                self.configure(data)
            except (ValueError, TypeError) as exc:
                await _json(send, 400, {"error": str(exc)})
                return
        await _json(send, 200, {"faults": asdict(self.faults)})

    def _request_id(self, seq: int) -> str:
        return "req_" + hashlib.sha1(f"{self.name}:{seq}".encode()).hexdigest()[:24]  # noqa: S324 (an id)

    def _headers(self, request_id: str) -> Headers:
        remaining = str(self.faults.ratelimit_remaining)
        if self.kind == "openai":
            return [
                ("x-request-id", request_id),
                ("openai-processing-ms", "1"),
                ("x-ratelimit-limit-requests", "10000"),
                ("x-ratelimit-remaining-requests", remaining),
                ("x-ratelimit-reset-requests", "6ms"),
            ]
        return [
            ("request-id", request_id),
            ("anthropic-ratelimit-requests-limit", "4000"),
            ("anthropic-ratelimit-requests-remaining", remaining),
        ]

    async def _error(self, send: Send, status: int, message: str | None, request_id: str,
                     extra: Headers | None = None) -> None:  # fmt: skip
        if self.kind == "openai":
            payload = openai_error(status, message)
        else:
            payload = anthropic_error(status, message, request_id)
        await _json(send, status, payload, [*self._headers(request_id), *(extra or [])])

    def _auth_problem(self, headers: dict[str, str]) -> tuple[int, str] | None:
        if self.kind == "openai":
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return 401, "You didn't provide an API key. Use 'Authorization: Bearer YOUR_KEY'."
            return None
        if not headers.get("x-api-key"):
            return 401, "x-api-key header is required"
        if not headers.get("anthropic-version"):
            return 400, "anthropic-version: header is required"
        return None

    def _body_problem(self, body: Any, embeddings: bool = False) -> str | None:
        if not isinstance(body, dict):
            return "We could not parse the JSON body of your request."
        if not isinstance(body.get("model"), str):
            return "model: Field required"
        if embeddings:
            return None if isinstance(body.get("input"), str | list) else "input: Field required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return "messages: Field required (a non-empty array of objects)"
        if self.kind == "anthropic" and not isinstance(body.get("max_tokens"), int):
            return "max_tokens: Field required"
        return None

    async def _provider(self, scope: Scope, receive: Receive, send: Send, raw: bytes) -> None:
        self._seq += 1
        seq = self._seq
        request_id = self._request_id(seq)
        headers = _header_dict(scope)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        record: dict[str, Any] = {
            "seq": seq,
            "method": scope["method"],
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": headers,
            "body": body if body is not None else raw.decode("utf-8", "replace"),
            "client_port": (scope.get("client") or ("", None))[1],  # which TCP connection
        }
        self.recent.append(record)

        problem = self._auth_problem(headers)
        if problem is None:
            message = self._body_problem(body, scope["path"].endswith("/embeddings"))
            problem = (400, message) if message else None
        if problem is None:
            outcome = self._pick_fault()
        else:
            outcome = "auth_error" if problem[0] == 401 else "bad_request"
        record["outcome"] = outcome
        self.outcomes[outcome] += 1

        self.in_flight += 1
        try:
            if await pause(receive, self.faults.latency_ms / 1000):
                self.disconnects += 1
                return
            if problem is not None:
                await self._error(send, problem[0], problem[1], request_id)
                return
            if scope["path"].endswith("/embeddings"):
                outcome = "ok" if outcome.startswith("stream") or outcome == "drip" else outcome
            if not await self._serve(receive, send, outcome, body, request_id):
                self.disconnects += 1
        finally:
            self.in_flight -= 1

    async def _serve(
        self, receive: Receive, send: Send, mode: str, body: dict[str, Any], request_id: str
    ) -> bool:
        """Answer according to ``mode``; False if the client disconnected before we were done."""
        f = self.faults
        headers = self._headers(request_id)
        if mode == "reset":
            await _reset_connection(receive)
            return True
        if mode == "timeout":
            if await pause(receive, f.delay_s):
                return False
            mode = "ok"
        if mode == "status":
            await self._status_fault(send, request_id)
            return True
        if mode == "wrong_content_type":
            await _start(
                send, 200, [("content-type", "text/html"), ("content-length", str(len(HTML))), *headers]
            )
            await _body(send, HTML)
            return True

        created = int(time.time())
        if "input" in body and "messages" not in body:
            data = json.dumps(fake_embeddings(body, created)).encode()
            data = data[: len(data) // 2] if mode == "bad_json" else data
            await _start(send, 200, [("content-type", "application/json"), *headers])
            await _body(send, data)
            return True
        reply = plan_reply(self.kind, self.name, request_id[4:], body)
        if body.get("stream") is True and mode != "bad_json":
            if self.kind == "openai":
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                events = openai_events(reply, created, include_usage)
            else:
                events = anthropic_events(reply)
            return await self._stream(receive, send, mode, events, headers)

        payload = openai_completion(reply, created) if self.kind == "openai" else anthropic_message(reply)
        data = json.dumps(payload).encode()
        if mode == "bad_json":
            data = data[: len(data) // 2]
        head = [("content-type", "application/json"), ("content-length", str(len(data))), *headers]
        await _start(send, 200, head)
        if mode == "stream_stall" and await pause(receive, f.delay_s):
            return False
        if mode == "stream_cut":
            await _body(send, data[: len(data) // 2], more=True)
            await _cut_connection(receive)
            return True
        await _body(send, data)
        return True

    async def _models(self, scope: Scope, send: Send) -> None:
        """`GET .../models`: what a health check asks for (no tokens, no body)."""
        self.model_lists += 1
        request_id = self._request_id(0)
        problem = self._auth_problem(_header_dict(scope))
        if problem is not None:
            await self._error(send, problem[0], problem[1], request_id)
        elif self.faults.mode == "status":
            await self._status_fault(send, request_id)
        else:
            data = [{"id": f"{self.name}-model", "object": "model", "created": 0, "owned_by": self.name}]
            await _json(send, 200, {"object": "list", "data": data})

    async def _status_fault(self, send: Send, request_id: str) -> None:
        f = self.faults
        extra = list(f.headers.items())
        if f.body is None:
            await self._error(send, f.status, None, request_id, extra)
        elif isinstance(f.body, str):
            data = f.body.encode()
            head = [("content-type", "text/plain"), ("content-length", str(len(data))), *extra]
            await _start(send, f.status, [*self._headers(request_id), *head])
            await _body(send, data)
        else:
            await _json(send, f.status, f.body, [*self._headers(request_id), *extra])

    async def _stream(self, receive: Receive, send: Send, mode: str, events: list[bytes],
                      headers: Headers) -> bool:  # fmt: skip
        f = self.faults
        head = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"), *headers]
        await _start(send, 200, head)
        for i, event in enumerate(events):
            if i == f.after_events:
                if mode == "stream_cut":
                    await _cut_connection(receive)
                    return True
                if mode == "stream_stall" and await pause(receive, f.delay_s):
                    return False
                if mode == "stream_garbage":
                    await _body(send, GARBAGE[self.kind], more=True)
            if mode == "drip" and i and await pause(receive, f.drip_ms / 1000):
                return False
            await _body(send, event, more=True)
        await _body(send, b"")
        return True


def fake_embeddings(body: dict[str, Any], created: int) -> dict[str, Any]:
    """OpenAI's embeddings answer: one unit vector per input, a function of the model id and the
    input (`dimensions` long, default 8); base64 float32 when `encoding_format` says so."""
    inputs = body["input"]
    if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    dims = body.get("dimensions") or 8
    data, tokens = [], 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else json.dumps(item)
        tokens += count_tokens(item) if isinstance(item, str) else len(item)
        seed = hashlib.sha256(f"{body['model']}|{text}".encode()).digest()
        raw = [seed[i % len(seed)] - 127.5 + i for i in range(dims)]
        norm = math.sqrt(sum(v * v for v in raw))
        vector = [v / norm for v in raw]
        value: Any = vector
        if body.get("encoding_format") == "base64":
            value = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": body["model"], "usage": usage, "created": created}


def make_fake_upstream(
    kind: Kind, *, name: str | None = None, faults: dict[str, Any] | None = None
) -> FakeUpstream:
    """A fresh fake provider (``kind`` = "openai" | "anthropic"); ``faults`` = an initial /_control body."""
    return FakeUpstream(kind, name=name, faults=faults)


def iter_sse(lines: Iterator[str]) -> Iterator[tuple[str | None, str]]:
    """Tiny SSE parser used by tests: yields (event, data) per blank-line-terminated event."""
    event: str | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event, "\n".join(data)


# ------------------------------------------------------------------------------------------------ CLI


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a fake OpenAI/Anthropic upstream (127.0.0.1 only).")
    parser.add_argument("--kind", choices=["openai", "anthropic"], default="openai")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default=None)
    parser.add_argument(
        "--faults", default=None, help="initial fault config as JSON, e.g. '{\"latency_ms\": 5}'"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Own-process fake for benchmarks: httptools + uvloop, no access log, no lifespan."""
    import uvicorn

    args = _parse_args(argv)
    faults = json.loads(args.faults) if args.faults else None
    app = make_fake_upstream(args.kind, name=args.name, faults=faults)
    print(f"{app.name} ({args.kind}) on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        http="httptools",
        loop="uvloop",
        access_log=False,
        lifespan="off",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
