"""Breakers on the hot path: what the breaker layer adds to one full router request.

    .venv/bin/python bench/bench_breakers.py [--n 2000] [--layer-n 5000] [--rounds 10] [--json FILE]

A full request = `POST /v1/chat/completions` through the real app (`create_app`: router auth,
JSON parsing, rules, the forwarder, the breaker plan, the response) driven in process by
`httpx.ASGITransport`. The upstream is an `httpx.MockTransport` answering a canned completion,
so the numbers are the router's own work plus whatever the breaker layer costs.

Variants (each its own app; tier `fast` = [a, b, c] on three providers, so a plan covers six
breakers; every breaker closed and the first candidate answers, the common case):
- breakers disabled (`breakers: {enabled: false}`): the baseline;
- enabled on memory://, sqlite:// (temp file, WAL) and dynamodb:// (moto on 127.0.0.1, started
  here: moto + loopback HTTP, NOT real DynamoDB latency), each with `cache_ttl_s` 1.0 (the
  default: one store read per second per process) and 0 (one store read per request).
Only the breaker keys go to the store under test: everything else the app keeps in the store
(the spend ledger, budgets, the response cache) goes to one MemoryStore in every variant, so
the variants differ by the breaker layer alone.

Requests are timed one at a time, in `--rounds` rounds with the variant order rotated each
round, so a busy neighbour hits every variant alike; "p99 (median round)" is the median of the
per-round p99s, steadier than the overall p99 on a shared machine (both are in the JSON, with
p99.9). Also per variant: process CPU time per request (moto runs in its own process, so this
is the router's and the in-process client's CPU only) and store reads (get_many calls) per
request. Then the breaker layer alone is timed the same way (`--layer-n` calls per variant):
`health.plan()` (the snapshot), walking the plan to the first admitted candidate and
`plan.success()` — what `Forwarder.complete` adds around the upstream call.
Prints Markdown tables, then one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support.moto_server (dev-only moto helper)

from tier_router.app import create_app  # noqa: E402
from tier_router.provider_keys import KeySource  # noqa: E402
from tier_router.routing.loader import parse_rules  # noqa: E402
from tier_router.settings import Settings  # noqa: E402
from tier_router.store.base import Store  # noqa: E402
from tier_router.store.factory import open_store  # noqa: E402
from tier_router.store.memory import MemoryStore  # noqa: E402

from tests.support.moto_process import MotoProcess  # noqa: E402
from tests.support.moto_server import FAKE_ENV  # noqa: E402


def moto_with(tables: list[str]) -> MotoProcess:
    """moto (tests/support/moto_server.py) in its own process, so its CPU and GIL time never
    land in the process being measured; with these tables."""
    moto = MotoProcess()
    for table in tables:
        moto.create_table(table)
    return moto


UPSTREAM = "http://upstream.bench"
KEY_ENV, KEY_VALUE = "BENCH_KEY", "sk-bench-breakers-0000"
ROUTER_KEY = "rk-bench"  # router auth on, as deployed
TABLE = "bench-breakers"
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-a",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris is the capital of France."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22},
    }
).encode()
REQUEST = {
    "model": "fast",
    "messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France? Answer in one sentence."},
    ],
    "max_tokens": 64,
}


def rules_doc(breakers: dict[str, Any]) -> dict[str, Any]:
    providers = {
        f"p{m}": {"kind": "openai", "base_url": f"{UPSTREAM}/{m}/v1", "api_key_env": KEY_ENV} for m in "abc"
    }
    models = {
        m: {"provider": f"p{m}", "id": f"gpt-{m}", "price": {"input": 1.0, "output": 2.0}} for m in "abc"
    }
    return {
        "version": 1,
        "providers": providers,
        "models": models,
        "tiers": {"fast": ["a", "b", "c"]},
        "default_tier": "fast",
        "breakers": breakers,
    }


class BreakerKeysOnly:
    """The store the app gets: breaker keys go to the store under test, every other key (the
    spend ledger, budgets, the response cache) to one MemoryStore in every variant — so the
    variants differ by the breaker layer only. Counts the breaker layer's reads."""

    PREFIX = "breaker:"

    def __init__(self, breakers: Store) -> None:
        self.breakers = breakers
        self.other = MemoryStore()
        self.reads = 0

    def _pick(self, key: str) -> Store:
        return self.breakers if key.startswith(self.PREFIX) else self.other

    async def get_many(self, keys: Any) -> dict[str, Any]:
        mine = [k for k in keys if k.startswith(self.PREFIX)]
        rest = [k for k in keys if not k.startswith(self.PREFIX)]
        out: dict[str, Any] = {}
        if mine:
            self.reads += 1
            out.update(await self.breakers.get_many(mine))
        if rest:
            out.update(await self.other.get_many(rest))
        return out

    async def get(self, key: str) -> Any:
        if key.startswith(self.PREFIX):
            self.reads += 1
        return await self._pick(key).get(key)

    async def put(self, key: str, value: Any, *, expires_at: float | None = None) -> None:
        await self._pick(key).put(key, value, expires_at=expires_at)

    async def add(self, key: str, deltas: Any, *, expires_at: float | None = None, limits: Any = None) -> Any:
        return await self._pick(key).add(key, deltas, expires_at=expires_at, limits=limits)

    async def put_if(self, key: str, value: Any, *, expected: Any, expires_at: float | None = None) -> bool:
        return await self._pick(key).put_if(key, value, expected=expected, expires_at=expires_at)

    async def delete(self, key: str) -> None:
        await self._pick(key).delete(key)

    async def ping(self) -> None:
        await self.breakers.ping()

    async def aclose(self) -> None:
        await self.breakers.aclose()
        await self.other.aclose()


def upstream(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=COMPLETION, headers={"content-type": "application/json"})


@dataclass
class Variant:
    name: str
    backend: str  # memory | sqlite | dynamodb | - (breakers disabled)
    cache_ttl_s: float | None  # None = breakers disabled
    app: Any = None
    client: httpx.AsyncClient | None = None
    router: httpx.AsyncClient | None = None
    store: BreakerKeysOnly | None = None
    samples: list[float] = field(default_factory=list)
    round_p99s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0  # process CPU time spent in this variant's timed requests
    reads: int = 0  # breaker-layer store reads during the timed full requests
    layer: list[float] = field(default_factory=list)

    async def start(self, store_url: str) -> None:
        breakers = (
            {"enabled": False}
            if self.cache_ttl_s is None
            else {"enabled": True, "cache_ttl_s": self.cache_ttl_s}
        )
        # The upstream host is served by the mock; anything else (moto) goes over real loopback HTTP.
        self.client = httpx.AsyncClient(
            mounts={UPSTREAM: httpx.MockTransport(upstream)},
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=60),
            timeout=httpx.Timeout(30.0),
        )
        self.store = BreakerKeysOnly(
            open_store(store_url, settings=Settings.from_env(), http_client=self.client)
        )
        self.app = create_app(
            Settings(
                rules_path=Path("bench-breakers.yaml"),
                store_url=store_url,
                api_keys=(ROUTER_KEY,),
                log_requests=False,
            ),
            rules=parse_rules(rules_doc(breakers), "bench-breakers.yaml"),
            client=self.client,
            keys=KeySource({KEY_ENV: KEY_VALUE}),
            store=self.store,
        )
        self.router = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://router",
            headers={"authorization": f"Bearer {ROUTER_KEY}"},
        )

    async def one(self) -> float:
        assert self.router is not None
        started = time.perf_counter()
        response = await self.router.post("/v1/chat/completions", json=REQUEST)
        elapsed = time.perf_counter() - started
        if response.status_code != 200 or response.headers.get("x-router-model") != "a":
            raise RuntimeError(f"{self.name}: unexpected answer {response.status_code} {response.text[:200]}")
        if response.headers.get("x-router-attempts") != "1":
            raise RuntimeError(f"{self.name}: expected 1 attempt, got {response.headers}")
        return elapsed

    async def layer_one(self) -> float:
        """The breaker layer alone, as the forwarder uses it for a request the first candidate
        answers: plan (snapshot), walk the candidates to the first admitted one, record success."""
        gateway = self.app.state.gateway
        candidates = tuple(gateway.rules.tiers["fast"])
        health = gateway.forwarder.health
        started = time.perf_counter()
        plan = await health.plan(candidates)
        chosen = None
        while (step := await plan.next()) is not None:
            route, admitted = step
            if admitted:
                chosen = route
                break
        if chosen is None or chosen.name != "a":
            raise RuntimeError(f"{self.name}: the first candidate was not admitted")
        await plan.success(chosen)
        return time.perf_counter() - started

    async def close(self) -> None:
        if self.router is not None:
            await self.router.aclose()
        if self.store is not None:
            await self.store.aclose()
        if self.client is not None:
            await self.client.aclose()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def micros(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6, 1)

    return {
        "p50_us": micros(0.50),
        "p99_us": micros(0.99),
        "p999_us": micros(0.999),
        "mean_us": round(statistics.fmean(ordered) * 1e6, 1),
        "n": len(ordered),
    }


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import starlette

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "machine": platform.machine(),
        "cpu": model or platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "httpx": httpx.__version__,
        "starlette": starlette.__version__,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


async def run(
    n: int, layer_n: int, rounds: int, variants: list[Variant], tmp: Path, moto: MotoProcess | None
) -> None:
    for i, v in enumerate(variants):
        if v.backend == "sqlite":
            url = f"sqlite:///{tmp / f'state-{i}.db'}"
        elif v.backend == "dynamodb":
            assert moto is not None
            url = f"dynamodb://{TABLE}-{i}?endpoint={moto.endpoint}&region={FAKE_ENV['AWS_REGION']}"
        else:
            url = "memory://"
        await v.start(url)
    try:
        for v in variants:  # warm-up: connections, caches, SQLite pages, first store reads
            for _ in range(50):
                await v.one()
        start_reads = {v.name: v.store.reads for v in variants if v.store is not None}
        per_round = max(1, n // rounds)
        for r in range(rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                batch = []
                cpu = time.process_time()
                for _ in range(per_round):
                    batch.append(await v.one())
                v.cpu_s += time.process_time() - cpu
                v.samples += batch
                v.round_p99s.append(sorted(batch)[min(len(batch) - 1, int(0.99 * len(batch)))])
        for v in variants:
            if v.store is not None:
                v.reads = v.store.reads - start_reads[v.name]
        for r in range(rounds):  # then the breaker layer alone, the same way
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                for _ in range(max(1, layer_n // rounds)):
                    v.layer.append(await v.layer_one())
    finally:
        for v in variants:
            await v.close()


def markdown(results: dict[str, Any]) -> str:
    base = results["breakers disabled"]
    keys = ("p50_us", "p99_median_round_us", "mean_us", "cpu_us_per_request")
    lines = [
        "| variant | p50 µs | p99 µs (median round) | mean µs | CPU µs / req "
        "| added p50 | added p99 | added mean | added CPU | store reads / req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results.items():
        cells = [f"{row[k]:,.0f}" for k in keys]
        if name == "breakers disabled":
            added = ["-"] * len(keys)
        else:
            added = [f"{row[k] - base[k]:+,.0f}" for k in keys]
        lines.append(
            f"| {name} | {' | '.join(cells)} | {' | '.join(added)} | {row['reads_per_request']:.3f} |"
        )
    lines += [
        "",
        "The breaker layer alone (plan + walk to the first admitted candidate + record success):",
        "",
        "| variant | p50 µs | p99 µs | mean µs |",
        "|---|---:|---:|---:|",
    ]
    for name, row in results.items():
        layer = row["layer"]
        lines.append(
            f"| {name} | {layer['p50_us']:,.1f} | {layer['p99_us']:,.1f} | {layer['mean_us']:,.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="timed requests per variant")
    parser.add_argument(
        "--layer-n", type=int, default=5000, help="timed breaker-layer-only calls per variant"
    )
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (order rotated)")
    parser.add_argument("--no-dynamodb", action="store_true", help="skip the moto variants")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    os.environ.update(FAKE_ENV)  # fake AWS credentials for moto; never real ones
    variants = [Variant("breakers disabled", "-", None)]
    stores = ["memory", "sqlite"] + ([] if args.no_dynamodb else ["dynamodb"])
    for store in stores:
        for ttl in (1.0, 0.0):
            variants.append(Variant(f"{store}, cache_ttl_s {ttl:g}", store, ttl))

    facts = machine()
    tables = [f"{TABLE}-{i}" for i, v in enumerate(variants) if v.backend == "dynamodb"]
    moto = moto_with(tables) if tables else None
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run(args.n, args.layer_n, args.rounds, variants, Path(tmp), moto))
    finally:
        if moto is not None:
            moto.stop()
    facts["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    facts["wall_s"] = round(time.monotonic() - started, 1)

    results: dict[str, Any] = {}
    for v in variants:
        row = summary(v.samples)
        row["reads_per_request"] = round(v.reads / len(v.samples), 4)
        row["p99_median_round_us"] = round(statistics.median(v.round_p99s) * 1e6, 1)
        row["cpu_us_per_request"] = round(v.cpu_s / len(v.samples) * 1e6, 1)
        row["layer"] = summary(v.layer)
        results[v.name] = row
    report = {
        "machine": facts,
        "n": args.n,
        "layer_n": args.layer_n,
        "rounds": args.rounds,
        "results": results,
    }

    print(
        f"{facts['date']}  nproc={facts['nproc']} {facts['machine']} {facts['cpu']!r} "
        f"python={facts['python']} load={facts['loadavg_start']}->{facts['loadavg_end']} "
        f"n={args.n} wall={facts['wall_s']}s\n"
    )
    print(markdown(results))
    print()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
