"""Soak: the router under sustained concurrent load while one provider misbehaves.

Loopback only, stops by itself. In one process, each in its own uvicorn thread on 127.0.0.1:
fake upstream A (faults: phase 1 = 20% 503s, phase 2 = 10% timeouts past A's 0.3 s provider
timeout), fake upstream B (healthy), and the router app (memory store, background settle, as
`tier-router serve` runs it). A load generator sends `--requests` chat completions (10%
streamed with usage) at `--concurrency`, then checks:

- zero lost requests: every response is a 200 (a stream ending in `[DONE]`) or an
  OpenAI-style error (`{"error": {"message", "type", "code", ...}}`), no transport error;
- spend: today's ledger total (`/v1/router/status`) equals, to the micro-dollar, the sum of
  every `x-router-cost-usd` header (streams: the final chunk's `usage.cost_usd`);
- RSS growth of the process (router + fakes + client, measured from /proc/self/status after
  a warm-up tenth of the run) stays under `--rss-mb`.

    .venv/bin/python bench/soak.py                       # 5,000 requests, concurrency 64
    .venv/bin/python bench/soak.py --requests 600 --json bench/out/soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/soak.py` from anywhere
    sys.path.insert(0, str(ROOT))

from tier_router.app import create_app  # noqa: E402
from tier_router.provider_keys import KeySource  # noqa: E402
from tier_router.routing.loader import parse_rules  # noqa: E402
from tier_router.settings import Settings  # noqa: E402

from tests.support.fake_upstream import make_fake_upstream  # noqa: E402
from tests.support.loopback import run_uvicorn_in_thread  # noqa: E402

KEYS = {"A_KEY": "sk-soak-a-0123456789", "B_KEY": "sk-soak-b-9876543210"}
PHASES: list[dict[str, Any]] = [
    {"mode": "status", "status": 503, "failure_rate": 0.2, "seed": 7},
    {"mode": "timeout", "delay_s": 2.0, "failure_rate": 0.1, "seed": 11},
]


def rules(a_url: str, b_url: str) -> dict[str, Any]:
    fast = {"connect": 1.0, "total": 0.3, "first_token": 0.3, "stall": 1.0, "read": 1.0}
    return {
        "version": 1,
        "providers": {
            "a": {"kind": "openai", "base_url": f"{a_url}/v1", "api_key_env": "A_KEY", "timeouts": fast},
            "b": {"kind": "openai", "base_url": f"{b_url}/v1", "api_key_env": "B_KEY"},
        },
        "models": {
            "ma": {"provider": "a", "id": "model-a", "price": {"input": 1.0, "output": 4.0}},
            "mb": {"provider": "b", "id": "model-b", "price": {"input": 0.5, "output": 2.0}},
        },
        "tiers": {"fast": ["ma", "mb"]},
        "default_tier": "fast",
        # A high threshold keeps A in the chain, so its faults keep exercising the fallback path.
        "breakers": {"failure_threshold": 100000, "window_s": 30, "recovery_s": 1},
    }


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def micro(amount: str) -> int:
    return int(Decimal(amount) * 1_000_000)


def is_openai_error(data: Any) -> bool:
    error = data.get("error") if isinstance(data, dict) else None
    return isinstance(error, dict) and isinstance(error.get("message"), str) and "type" in error


async def one(client: httpx.AsyncClient, n: int, stats: dict[str, Any]) -> None:
    stream = n % 10 == 9
    body: dict[str, Any] = {
        "model": "auto",
        "messages": [{"role": "user", "content": f"soak request {n}: say something short"}],
        "max_tokens": 32,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            raw = await response.aread()
    except httpx.HTTPError as exc:
        stats["outcomes"][f"lost:{exc.__class__.__name__}"] += 1
        return
    stats["latencies"].append(time.perf_counter() - started)
    status = response.status_code
    if status == 200 and stream:
        text = raw.decode()
        events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            stats["outcomes"]["lost:stream_incomplete"] += 1
            return
        for event in events[:-1]:
            usage = json.loads(event).get("usage") or {}
            if "cost_usd" in usage:
                stats["cost_micro"] += round(Decimal(str(usage["cost_usd"])) * 1_000_000)
        stats["outcomes"]["200 stream"] += 1
    elif status == 200:
        stats["cost_micro"] += micro(response.headers.get("x-router-cost-usd", "0"))
        stats["outcomes"]["200"] += 1
    else:
        try:
            ok = is_openai_error(json.loads(raw))
        except ValueError:
            ok = False
        stats["outcomes"][f"{status} {'error' if ok else 'lost:malformed'}"] += 1
    if response.headers.get("x-router-model") == "mb" and response.headers.get("x-router-attempts") == "2":
        stats["fallbacks"] += 1


async def drive(base: str, a: Any, requests: int, concurrency: int) -> dict[str, Any]:
    stats: dict[str, Any] = {"outcomes": Counter(), "latencies": [], "cost_micro": 0, "fallbacks": 0}
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=30.0
    )
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n)
    rss: dict[str, int] = {}
    warm = max(1, requests // 10)
    switch = requests // 2
    done = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while True:
            try:
                n = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if n == switch:
                a.configure(PHASES[1])  # same process, so no /_control round trip is needed
            await one(client, n, stats)
            done += 1
            if done == warm:
                rss["warm_kb"] = rss_kb()

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        ledger = await settled_total(client, sum(stats["outcomes"].values()))
    rss["end_kb"] = rss_kb()
    latencies = sorted(stats["latencies"]) or [0.0]
    lost = {k: v for k, v in stats["outcomes"].items() if k.startswith("lost")}
    return {
        "requests": requests,
        "concurrency": concurrency,
        "elapsed_s": round(elapsed, 2),
        "rps": round(requests / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1),
        "outcomes": dict(sorted(stats["outcomes"].items())),
        "lost": sum(lost.values()),
        "fallbacks": stats["fallbacks"],
        "header_cost_micro": stats["cost_micro"],
        "ledger_cost_micro": ledger["total"],
        "ledger_requests": ledger["requests"],
        "upstream_a": a.stats().get("outcomes", {}),
        "rss_warm_mb": round(rss.get("warm_kb", 0) / 1024, 1),
        "rss_end_mb": round(rss["end_kb"] / 1024, 1),
        "rss_growth_mb": round((rss["end_kb"] - rss.get("warm_kb", rss["end_kb"])) / 1024, 1),
    }


async def settled_total(client: httpx.AsyncClient, expected_requests: int) -> dict[str, int]:
    """The ledger, once every background settle has landed (requests counted == sent)."""
    deadline = time.monotonic() + 10
    while True:
        spend = (await client.get("/v1/router/status")).json()["spend"]
        result = {"total": micro(spend["total_usd"]), "requests": spend["requests"]}
        if result["requests"] >= expected_requests or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


def run_soak(requests: int = 5000, concurrency: int = 64) -> dict[str, Any]:
    a = make_fake_upstream("openai", name="A", faults=PHASES[0])
    b = make_fake_upstream("openai", name="B")
    with ExitStack() as stack:
        a_url = stack.enter_context(run_uvicorn_in_thread(a))
        b_url = stack.enter_context(run_uvicorn_in_thread(b))
        settings = Settings(
            rules_path=Path("soak-rules.yaml"),
            store_url="memory://",
            log_requests=False,
            background_settle=True,
        )
        app = create_app(
            settings, rules=parse_rules(rules(a_url, b_url), "soak-rules.yaml"), keys=KeySource(KEYS)
        )
        base = stack.enter_context(run_uvicorn_in_thread(app, graceful_shutdown_s=2))
        return asyncio.run(drive(base, a, requests, concurrency))


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("requests / concurrency", f"{result['requests']} / {result['concurrency']}"),
        ("elapsed / rps", f"{result['elapsed_s']} s / {result['rps']}"),
        ("latency p50 / p99", f"{result['p50_ms']} ms / {result['p99_ms']} ms"),
        ("outcomes", ", ".join(f"{k}: {v}" for k, v in result["outcomes"].items())),
        ("lost", str(result["lost"])),
        ("served by fallback", str(result["fallbacks"])),
        ("upstream A outcomes", ", ".join(f"{k}: {v}" for k, v in result["upstream_a"].items())),
        (
            "cost: headers / ledger (micro-USD)",
            f"{result['header_cost_micro']} / {result['ledger_cost_micro']}",
        ),
        ("ledger requests", str(result["ledger_requests"])),
        (
            "RSS warm -> end (growth)",
            f"{result['rss_warm_mb']} -> {result['rss_end_mb']} MB ({result['rss_growth_mb']} MB)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rss-mb", type=float, default=64.0, help="allowed RSS growth after warm-up")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    result = run_soak(args.requests, args.concurrency)
    print_table(result)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    ok = (
        result["lost"] == 0
        and result["header_cost_micro"] == result["ledger_cost_micro"]
        and result["rss_growth_mb"] < args.rss_mb
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
