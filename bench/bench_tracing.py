"""What tracing costs per request: CPU time of chat requests served in-process (httpx's ASGI
transport, the mock provider with no delay), tracing off vs on (the real batch span processor,
an exporter that drops the spans: the network is not measured), interleaved in rounds.

    .venv/bin/python bench/bench_tracing.py [--requests 2000] [--rounds 5]

Needs the `otel` extra. Reports the median per-request CPU time (process time: the least
disturbed by a busy machine) of each mode, and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from tier_router.app import create_app
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings

RULES: dict[str, Any] = {
    "version": 1,
    "providers": {"fast": {"kind": "mock", "base_url": "mock://fast"}},
    "models": {"answer": {"provider": "fast", "id": "mock-answer", "price": {"input": 1.0, "output": 4.0}}},
    "tiers": {"solo": ["answer"]},
    "default_tier": "solo",
}
BODY = {"model": "auto", "messages": [{"role": "user", "content": "How far is the moon?"}], "max_tokens": 50}


class Dropped(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


async def cpu_per_request(traced: bool, requests: int) -> float:
    exporter = Dropped()
    processor = BatchSpanProcessor(exporter) if traced else None
    settings = Settings(rules_path=Path("unused.yaml"), log_requests=False)
    app = create_app(settings, rules=parse_rules(RULES, "bench.yaml"), span_processor=processor)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
        for _ in range(50):  # warm up
            await client.post("/v1/chat/completions", json=BODY)
        started = time.process_time()
        for _ in range(requests):
            reply = await client.post("/v1/chat/completions", json=BODY)
            assert reply.status_code == 200, reply.text
        await app.gateway.lifecycle.drainer.drain()
        spent = time.process_time() - started
    if processor is not None:
        processor.force_flush()
        assert exporter.spans >= 2 * requests, exporter.spans  # a server and an attempt span each
        processor.shutdown()
    await app.gateway.client.aclose()
    return spent / requests * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    off: list[float] = []
    on: list[float] = []
    for _ in range(args.rounds):
        off.append(asyncio.run(cpu_per_request(False, args.requests)))
        on.append(asyncio.run(cpu_per_request(True, args.requests)))
    m_off, m_on = statistics.median(off), statistics.median(on)
    print(f"requests={args.requests} rounds={args.rounds} (CPU µs per request, median of rounds)")
    print(f"tracing off  {m_off:8.1f}   rounds: {', '.join(f'{x:.0f}' for x in off)}")
    print(f"tracing on   {m_on:8.1f}   rounds: {', '.join(f'{x:.0f}' for x in on)}")
    print(f"difference   {m_on - m_off:+8.1f} µs ({(m_on / m_off - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
