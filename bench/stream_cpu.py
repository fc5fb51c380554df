"""CPU per streamed answer spent in the router's own per-chunk code, in process (no sockets).

    .venv/bin/python bench/stream_cpu.py [--streams 3000] [--per-read 1] [--rounds 7]

The bench answer of proxy_overhead.py --stream (the fake upstream's 19 events: role, 16 words,
finish, usage, [DONE]), read `--per-read` events per upstream read, through what a streamed
request pays per chunk: `sse_batches` -> `hold_until_content` -> `OpenedStream.frames` ->
`responses.answer_events` (SSE parsing, chunk decoding, scrubbing with a redactor that knows
one provider key, stream state, counting, framing, the stall limit, the drain), against a
pass-through of the same reads (`httpx.Response.aiter_raw`, what the floor proxy does).
Process CPU time, alternated rounds, medians: load on the machine hurts it less than a
wall-clock figure. For an instruction count (load-independent), run one target under
`valgrind --tool=cachegrind --cache-sim=no` with two `--streams` values and divide the
difference of the `I refs` by the difference of streams (`--only router` / `--only floor`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "handler"), str(ROOT)]

import httpx  # noqa: E402
from tier_router.providers.openai_compat import OpenAIStreamDecoder  # noqa: E402
from tier_router.redaction import Redactor  # noqa: E402
from tier_router.responses import answer_events  # noqa: E402
from tier_router.sse import sse_batches  # noqa: E402
from tier_router.stream import OpenedStream, hold_until_content  # noqa: E402

from bench.proxy_overhead import API_KEY, STREAM_BODY  # noqa: E402
from tests.support import fake_upstream  # noqa: E402


class Reads(httpx.AsyncByteStream):
    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for read in self.reads:
            yield read


class Route:
    name = "bench-model"
    provider_name = "fake"


class Spend:
    def price(self, route: Any, usage: dict[str, Any]) -> int:
        return 123


class Exchange:
    def __init__(self) -> None:
        self.cost = self.usage = self.stream = self.route = None
        self.attempts: list[Any] = []

    def ended(self, *args: Any) -> None:
        pass

    def total_cost(self, cost: int | None) -> int | None:
        return cost


def response(reads: list[bytes]) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Reads(reads))


async def router(reads: list[bytes], redactor: Redactor) -> int:
    upstream = response(reads)
    batches = sse_batches(upstream)
    decoder = OpenAIStreamDecoder(True)
    held, pending = await hold_until_content(batches, decoder)
    opened = OpenedStream(Route(), [], held, pending, decoder, {}, 30.0, batches, upstream, redactor=redactor)  # type: ignore[arg-type]
    sent = 0
    async for frame in answer_events(Exchange(), opened, Spend(), None):  # type: ignore[arg-type]
        sent += len(frame)
    return sent


async def floor(reads: list[bytes], redactor: Redactor) -> int:
    upstream = response(reads)
    sent = 0
    async for block in upstream.aiter_raw():
        sent += len(block)
    await upstream.aclose()
    return sent


async def main(args: argparse.Namespace) -> None:
    reply = fake_upstream.plan_reply("openai", "bench", "abc", STREAM_BODY)
    events = fake_upstream.openai_events(reply, 1_700_000_000, include_usage=True)
    reads = [b"".join(events[i : i + args.per_read]) for i in range(0, len(events), args.per_read)]
    redactor = Redactor([API_KEY + "-provider"])  # a provider key: every stream is scrubbed
    targets = {"router": router, "floor": floor}
    if args.only:
        for _ in range(args.streams):
            await targets[args.only](reads, redactor)
        return
    for target in targets.values():
        for _ in range(200):
            await target(reads, redactor)
    runs: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(args.rounds):
        for name, target in targets.items():
            started = time.process_time()
            for _ in range(args.streams):
                await target(reads, redactor)
            runs[name].append((time.process_time() - started) / args.streams * 1e6)
    for name, values in runs.items():
        print(
            f"{name:7} {statistics.median(values):7.1f} µs/stream (runs {min(values):.1f}-{max(values):.1f})"
        )
    added = statistics.median(runs["router"]) - statistics.median(runs["floor"])
    print(f"router - floor: {added:.1f} µs/stream, {added / len(events):.1f} µs per event")
    print(f"{len(events)} events in {len(reads)} reads; load average (1 min) {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=3000)
    parser.add_argument("--per-read", type=int, default=1, help="upstream events per network read")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=["router", "floor"], help="run one target, no report (valgrind)")
    asyncio.run(main(parser.parse_args()))
