"""A provider on 127.0.0.1 that answers with the usage the test sets — cached reads included —
in both wire shapes: OpenAI (`/openai/v1/chat/completions`, `n` choices, streamed with the
usage chunk only when the request asked for it) and Anthropic (`/anthropic/v1/messages`, with
`cache_read_input_tokens` / `cache_creation_input_tokens`, streamed as message_start ...
message_delta). The usage is what a real provider reports for the whole request (all `n`
choices); the fake's job is to carry it, not to count."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]


@dataclass
class Usage:
    input: int = 120
    """Uncached input tokens (Anthropic's `input_tokens`; OpenAI's prompt minus cached)."""
    output: int = 30
    cached: int = 0
    written: int = 0
    """Anthropic cache writes (`cache_creation_input_tokens`)."""

    def openai(self) -> dict[str, Any]:
        prompt = self.input + self.cached
        return {
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt + self.output,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        }

    def anthropic(self, output: int | None = None) -> dict[str, Any]:
        return {
            "input_tokens": self.input,
            "output_tokens": self.output if output is None else output,
            "cache_read_input_tokens": self.cached,
            "cache_creation_input_tokens": self.written,
        }


@dataclass
class UsageFake:
    usage: Usage = field(default_factory=Usage)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw or b"{}")
        self.bodies.append(body)
        anthropic = scope["path"].startswith("/anthropic/")
        if not body.get("stream"):
            answer = self._anthropic(body) if anthropic else self._openai(body)
            await _respond(send, b"application/json", [json.dumps(answer).encode()])
            return
        events = self._anthropic_events(body) if anthropic else self._openai_events(body)
        await _respond(send, b"text/event-stream", events)

    def _openai(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = [
            {"index": i, "message": {"role": "assistant", "content": f"answer {i}"}, "finish_reason": "stop"}
            for i in range(body.get("n") or 1)
        ]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": choices,
            "usage": self.usage.openai(),
        }

    def _openai_events(self, body: dict[str, Any]) -> list[bytes]:
        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0}
            data |= {"model": body.get("model"), "choices": choices, **extra}
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        out = []
        for i in range(body.get("n") or 1):
            out.append(chunk([{"index": i, "delta": {"role": "assistant", "content": f"answer {i}"}}]))
            out.append(chunk([{"index": i, "delta": {}, "finish_reason": "stop"}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            out.append(chunk([], usage=self.usage.openai()))
        return [*out, b"data: [DONE]\n\n"]

    def _anthropic(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": "answer"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": self.usage.anthropic(),
        }

    def _anthropic_events(self, body: dict[str, Any]) -> list[bytes]:
        start = {
            **self._anthropic(body),
            "content": [],
            "stop_reason": None,
            "usage": self.usage.anthropic(1),
        }
        block = {"type": "text", "text": ""}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "answer"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": self.usage.output},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]


async def _respond(send: Any, content_type: bytes, parts: list[bytes]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
    for part in parts:
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
