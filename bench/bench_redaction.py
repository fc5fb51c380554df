"""What secret redaction costs on the hot path (issue 13, item 9): a 2 KB whole answer, the
forwarded headers, a 200-chunk stream (every chunk its own upstream read: the worst case),
and one log record — with no secret in any of them, the common case.

    python bench/bench_redaction.py [--secrets 1 3 20]

Prints microseconds per operation (best of 5 `timeit` repeats).
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import timeit
from collections.abc import Callable
from typing import Any

import httpx
from tier_router.forwarder import upstream_headers
from tier_router.redaction import Redactor, redact_logs
from tier_router.stream import frame

WORDS = [
    "The",
    "router",
    "forwards",
    "requests",
    "to",
    "providers",
    "and",
    "keeps",
    "track",
    "of",
    "costs,",
    "budgets",
    "and",
    "limits;",
    "it",
    "falls",
    "back",
    "to",
    "the",
    "next",
    "model",
    "when",
    "one",
    "fails,",
    "streams",
    "answers",
    "as",
    "they",
    "arrive,",
    "and",
    "logs",
    "one",
    "line",
    "per",
    "request",
    "with",
    "the",
    "routing",
    "facts",
    "and",
    "numbers",
    "only.",
    "",
]


def best_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def body_2kb() -> bytes:
    text = " ".join(WORDS * 6)[:1700]
    return json.dumps({
        "id": "chatcmpl-abc123", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 400, "total_tokens": 520},
    }).encode()  # fmt: skip


def stream_chunks(n: int = 200) -> list[tuple[dict[str, Any], str]]:
    """OpenAI chunks of one word each (" word", as tokens come), decoded, with their text."""
    out = []
    for i in range(n):
        chunk = {
            "id": "chatcmpl-abc123",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {"index": 0, "delta": {"content": " " + WORDS[i % len(WORDS)]}, "finish_reason": None}
            ],
        }
        out.append((chunk, json.dumps(chunk)))
    return out


def run_stream(redactor: Redactor | None, chunks: list[tuple[dict[str, Any], str]]) -> None:
    """Each chunk as its own read: scrubbed, framed, the frame scanned (what `frames` does)."""
    scrubber = redactor.stream() if redactor is not None else None
    for chunk, raw in chunks:
        sent, _ = frame([(chunk, raw)], lambda usage: None, scrubber)
        if redactor is not None:
            redactor.bytes(sent)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secrets", type=int, nargs="+", default=[1, 3, 20])
    args = parser.parse_args()
    body = body_2kb()
    raws = stream_chunks()
    response = httpx.Response(
        200,
        headers={
            "x-request-id": "req_0123456789abcdef",
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "9999",
            "x-ratelimit-limit-tokens": "2000000",
            "x-ratelimit-remaining-tokens": "1999000",
            "x-ratelimit-reset-requests": "6ms",
            "content-type": "application/json",
            "openai-processing-ms": "412",
        },
    )
    none = Redactor()
    print(f"body {len(body)} B; stream {len(raws)} chunks, each its own read")
    columns = ("body us", "headers us", "stream us", "(no scrub)", "log rec us")
    print(f"{'secrets':>8} " + " ".join(f"{c:>11}" for c in columns))
    log = logging.getLogger("bench.redaction")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    log.setLevel(logging.DEBUG)
    plain_record = best_us(lambda: log.debug("closing %s: %r", "abc", ValueError("x")), 20000)
    for count in args.secrets:
        redactor = Redactor(f"sk-proj-{i:04d}-{secrets.token_urlsafe(30)}" for i in range(count))
        redact_logs(redactor)
        body_us = best_us(lambda r=redactor: r.bytes(body), 20000)
        headers_us = best_us(lambda r=redactor: upstream_headers(response, r), 20000)
        stream_us = best_us(lambda r=redactor: run_stream(r, raws), 200)
        bare_us = best_us(lambda: run_stream(None, raws), 200)
        log_us = best_us(lambda: log.debug("closing %s: %r", "abc", ValueError("x")), 20000)
        row = (f"{body_us:.2f}", f"{headers_us:.2f}", f"{stream_us:.0f}", f"{bare_us:.0f}", f"{log_us:.2f}")
        print(f"{count:>8} " + " ".join(f"{v:>11}" for v in row))
    print(f"no secrets: body {best_us(lambda: none.bytes(body), 20000):.2f} us; log record before the")
    print(f"factory was installed: {plain_record:.2f} us; headers without redactor: "
          f"{best_us(lambda: upstream_headers(response), 20000):.2f} us")  # fmt: skip


if __name__ == "__main__":
    main()
