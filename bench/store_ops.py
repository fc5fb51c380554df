"""State-store operations per request, by feature set: what each request reads and writes, and where.

    .venv/bin/python bench/store_ops.py [--requests 20] [--stores sqlite,dynamodb] [--json PATH]

The default configuration (`Settings.from_env(serve=True)`: SQLite store file, one log line per
request, spend settled in the background) with its store wrapped by `CountingStore`, which records
every call by primitive and by the item key it touches. Requests go through the real app (in
process, over ASGI) to a fake OpenAI upstream under uvicorn on 127.0.0.1. After each request the
background settle (and any judgement) is drained, so every operation lands on the request that
caused it. The first request of each feature set is reported apart (`first`): it pays one-off
reads (cache warm-up of pacing, breaker state).

With `--stores dynamodb` the same runs use `dynamodb://` on moto (its own process, 127.0.0.1), and
the DynamoDB API calls actually sent (by `X-Amz-Target`) are counted too, at the HTTP client.

Primitives: `get`, `get_many` (batch get), `put`, `add` (unconditional counter update), `add_if`
(an add with a limit, claim, release or absence condition), `put_if` (conditional put), `delete`.
Writes = put + add + add_if + put_if + delete. Item keys are grouped into families with their
variable parts replaced (`spend:<day>`, `hold:<id>`, ...), so the hot items show.

Prints a Markdown table per store and writes the whole report (per-family counts included) to
`--json` (default bench/out/store_ops.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "handler")]

import httpx  # noqa: E402
from tier_router.app import create_app  # noqa: E402
from tier_router.gateway import make_http_client  # noqa: E402
from tier_router.routing.loader import parse_rules  # noqa: E402
from tier_router.settings import Settings  # noqa: E402
from tier_router.store.base import Scalar, Store, Value  # noqa: E402
from tier_router.store.factory import open_store  # noqa: E402

OUT = ROOT / "bench" / "out"
UPSTREAM_KEY = "sk-bench-store-ops-0000000000"
ROUTER_KEY = "rk-bench-store-ops-000000001"
WRITES = ("put", "add", "add_if", "put_if", "delete")
READS = ("get", "get_many")
PRIMITIVES = (*READS, *WRITES)

# ------------------------------------------------------------------------------ the counting store

_VARIABLE = [
    (re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}(:?\d{2})?)?"), "<day>"),
    (re.compile(r"[A-Za-z0-9_-]*\d[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*|[A-Za-z0-9_-]{16,}"), "<id>"),
    (re.compile(r"\d{6,}"), "<n>"),
]


def key_family(key: str) -> str:
    """`spend:2026-12-07` -> `spend:<day>`: the key with its variable parts replaced."""
    for pattern, name in _VARIABLE:
        key = pattern.sub(name, key)
    return key


class CountingStore(Store):
    """Every call to `inner` recorded as (primitive, item key), in order, then passed on.

    `get_many` records one entry per distinct key under `get_many_keys` as well as one call.
    `add` with a limit, claim, release or `absent` condition is recorded as `add_if`."""

    def __init__(self, inner: Store) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __repr__(self) -> str:
        return f"CountingStore({self.inner!r})"

    def counts(self, since: int = 0) -> Counter[str]:
        return Counter(op for op, _ in self.calls[since:])

    def families(self, since: int = 0) -> Counter[str]:
        """`<primitive> <key family>` -> how many times (a batch get counts once per key)."""
        return Counter(f"{op} {key_family(k)}" for op, keys in self.calls[since:] for k in keys)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        self.calls.append(("get_many", tuple(dict.fromkeys(keys))))
        return await self.inner.get_many(keys)

    async def get(self, key: str) -> Value | None:
        self.calls.append(("get", (key,)))
        return await self.inner.get(key)

    async def put(self, key: str, value: Mapping[str, Scalar], *, expires_at: float | None = None) -> None:
        self.calls.append(("put", (key,)))
        await self.inner.put(key, value, expires_at=expires_at)

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        conditional = any(options.get(name) for name in ("limits", "claim", "release", "absent"))
        self.calls.append(("add_if" if conditional else "add", (key,)))
        return await self.inner.add(key, deltas, **options)

    async def put_if(self, key: str, value: Mapping[str, Scalar], **options: Any) -> bool:
        self.calls.append(("put_if", (key,)))
        return await self.inner.put_if(key, value, **options)

    async def delete(self, key: str) -> None:
        self.calls.append(("delete", (key,)))
        await self.inner.delete(key)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


# ------------------------------------------------------------------------------------ feature sets


@dataclass(frozen=True)
class Feature:
    name: str
    sections: dict[str, Any] = field(default_factory=dict)
    keys: bool = False  # router keys on (Authorization required)
    path: str = "/v1/chat/completions"
    same_prompt: bool = False  # every request the same body (a cache hit after the first)
    fail_first: bool = False  # the upstream answers 500 once before the measured requests
    feedback: bool = False  # a POST /v1/feedback after each answer
    streams: tuple[bool, ...] = (False, True)
    conversation: bool = False  # every request a later turn of one growing conversation (sticky)


LIMITS = {"requests_per_minute": 100000, "tokens_per_minute": 10_000_000}
BUDGETS = {"daily_usd": 1000}
KEY_BUDGETS = {"daily_usd": 1000, "per_key_daily_usd": 500}
SHARDED = {**KEY_BUDGETS, "shards": 4}
CACHE = {"enabled": True, "ttl_s": 3600}
FEATURES = (
    Feature("plain (breakers on, nothing else)"),
    Feature("+ daily budget (hard cap, pacing)", {"budgets": BUDGETS}),
    Feature("+ router key: rpm/tpm, key daily_usd", {"budgets": KEY_BUDGETS, "limits": LIMITS}, keys=True),
    Feature(
        "+ budgets.shards: 4 (key limits, key daily_usd)", {"budgets": SHARDED, "limits": LIMITS}, keys=True
    ),
    Feature(
        "+ response cache, misses", {"budgets": KEY_BUDGETS, "limits": LIMITS, "cache": CACHE}, keys=True
    ),
    Feature(
        "+ response cache, hits",
        {"budgets": KEY_BUDGETS, "limits": LIMITS, "cache": CACHE},
        keys=True,
        same_prompt=True,
    ),
    Feature("breakers after a failure (no spend)", fail_first=True),
    Feature(
        "sticky conversation: later turns (budgets, key limits)",
        {"budgets": KEY_BUDGETS, "limits": LIMITS},
        keys=True,
        conversation=True,
    ),
    Feature("feedback on (quality loop), no judging", {"quality": {"feedback": {"enabled": True}}}),
    Feature(
        "feedback on + POST /v1/feedback each",
        {"quality": {"feedback": {"enabled": True}}},
        keys=True,
        feedback=True,
        streams=(False,),
    ),
    Feature(
        "judging every answer (sample 1)",
        {"quality": {"sample": 1.0, "reference": "premium", "judge": {"model": "judge"}}},
    ),
    Feature(
        "all on: key limits, budgets, cache (miss), feedback",
        {
            "budgets": KEY_BUDGETS,
            "limits": LIMITS,
            "cache": CACHE,
            "quality": {"feedback": {"enabled": True}},
        },
        keys=True,
    ),
    Feature(
        "embeddings (budget + key limits)",
        {"budgets": KEY_BUDGETS, "limits": LIMITS},
        keys=True,
        path="/v1/embeddings",
        streams=(False,),
    ),
)


def rules_doc(upstream: str, sections: Mapping[str, Any]) -> dict[str, Any]:
    """Two chat tiers (`budget` = [cheap, cheap-b] so a failure fails over, `premium`), a judge
    model and an embedding tier, all on the one fake; a non-matching regex rule."""
    return {
        "version": 1,
        "providers": {
            "fake": {"kind": "openai", "base_url": upstream + "/v1", "api_key_env": "BENCH_UPSTREAM_KEY"}
        },
        "models": {
            "cheap": {"provider": "fake", "id": "cheap-1", "price": {"input": 0.1, "output": 0.4}},
            "cheap-b": {"provider": "fake", "id": "cheap-2", "price": {"input": 0.1, "output": 0.4}},
            "good": {"provider": "fake", "id": "good-1", "price": {"input": 2.5, "output": 10.0}},
            "judge": {"provider": "fake", "id": "judge-1", "price": {"input": 2.5, "output": 10.0}},
            "emb": {"provider": "fake", "id": "emb-1", "kind": "embedding", "price": {"input": 0.02}},
        },
        "tiers": {"budget": ["cheap", "cheap-b"], "premium": ["good"], "embed": ["emb"]},
        "default_tier": "budget",
        "embeddings": {"default_tier": "embed"},
        "rules": [
            {
                "name": "never-matches",
                "tier": "premium",
                "when": {"last_user_matches": {"pattern": r"\b(prove|derive)\b", "ignore_case": True}},
            }
        ],
        **sections,
    }


def request_body(feature: Feature, n: int, stream: bool) -> dict[str, Any]:
    if feature.path == "/v1/embeddings":
        return {"model": "auto", "input": f"embed this text {n}"}
    text = "Say hello in five words." if feature.same_prompt else f"Say hello in five words, #{n}."
    messages: list[dict[str, Any]] = [{"role": "user", "content": text}]
    if feature.conversation:  # turn n + 2 of one conversation: its first turn, then n + 1 answers
        messages = [{"role": "user", "content": "Say hello in five words."}]
        for i in range(n + 1):
            messages += [
                {"role": "assistant", "content": f"Hello there, friend number {i}!"},
                {"role": "user", "content": f"Again, #{i}."},
            ]
    body: dict[str, Any] = {"model": "auto", "messages": messages, "max_tokens": 64}
    if "cache" in feature.sections:
        body["temperature"] = 0  # cacheable without the opt-in header
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


# ----------------------------------------------------------------------------------------- running


AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
STORES = ("sqlite", "dynamodb", "memory")


@dataclass
class Measured:
    feature: str
    stream: bool
    statuses: list[int]
    first: dict[str, int]
    per_request: dict[str, float]  # median over the warm requests
    spread: dict[str, list[int]]  # min, max over the warm requests
    families: dict[str, float]  # per warm request, averaged
    api_calls: dict[str, float]  # DynamoDB API calls per warm request (dynamodb only)


def summarize(ops: Counter[str]) -> dict[str, int]:
    row = {p: ops.get(p, 0) for p in PRIMITIVES}
    row["reads"] = sum(row[p] for p in READS)
    row["writes"] = sum(row[p] for p in WRITES)
    return row


async def settle(app: Any) -> None:
    """Until the request's background work is done: settles, judgements."""
    gateway = app.gateway
    for _ in range(500):
        await gateway.lifecycle.drainer.drain()
        judging = gateway.quality.judging
        if judging is None or judging.pending == 0:
            return
        await asyncio.sleep(0.01)


async def measure(
    store_url: str, environ: dict[str, str], feature: Feature, stream: bool, upstream: str, requests: int
) -> Measured:
    rules = parse_rules(rules_doc(upstream, feature.sections), "store-ops.yaml")
    env = {
        **environ,
        "TIER_ROUTER_STORE": store_url,
        "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
        "TIER_ROUTER_RULES": "unused.yaml",  # the rules are handed in
    }
    if feature.keys:
        env["TIER_ROUTER_API_KEYS"] = f"team={ROUTER_KEY}"
    settings = Settings.from_env(env, serve=True)
    api_calls: Counter[str] = Counter()

    async def count_api(request: httpx.Request) -> None:
        target = request.headers.get("x-amz-target")
        if target:
            api_calls[target.rpartition(".")[2]] += 1

    client = make_http_client(settings)
    client.event_hooks["request"].append(count_api)
    store = CountingStore(open_store(settings.store_url, settings=settings, http_client=client))
    app = create_app(settings, rules=rules, client=client, store=store)
    headers = {"authorization": f"Bearer {ROUTER_KEY}"} if feature.keys else {}
    transport = httpx.ASGITransport(app=app)
    first: dict[str, int] = {}
    rows: list[dict[str, int]] = []
    calls: list[Counter[str]] = []
    families: Counter[str] = Counter()
    statuses: list[int] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://router", timeout=30) as http:
        if feature.fail_first:
            await control(upstream, {"mode": "status", "status": 500, "times": 1})
        for n in range(requests + 1):
            mark, api_mark = len(store.calls), api_calls.copy()
            body = request_body(feature, n, stream)
            response = await http.post(feature.path, json=body, headers=headers)
            await response.aread()
            statuses.append(response.status_code)
            if feature.feedback and response.status_code == 200:
                await settle(app)  # the request's fact is written by its settle
                rid = response.headers.get("x-router-request-id", "")
                fb = await http.post("/v1/feedback", json={"request_id": rid, "score": 1}, headers=headers)
                statuses.append(fb.status_code)
            await settle(app)
            row = summarize(store.counts(mark))
            if n == 0:
                first = row
                continue
            rows.append(row)
            calls.append(api_calls - api_mark)
            families.update(store.families(mark))
        await app.gateway.drain()
    await store.aclose()
    await client.aclose()
    return Measured(
        feature=feature.name,
        stream=stream,
        statuses=sorted(set(statuses)),
        first=first,
        per_request={k: statistics.median(r[k] for r in rows) for k in rows[0]},
        spread={k: [min(r[k] for r in rows), max(r[k] for r in rows)] for k in rows[0]},
        families={k: round(v / len(rows), 2) for k, v in families.most_common()},
        api_calls={k: round(sum(c[k] for c in calls) / len(rows), 2) for k in sorted(set().union(*calls))},
    )


async def control(upstream: str, faults: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(upstream + "/_control", json={"reset": True, **faults})).raise_for_status()


def fresh_store(name: str, moto: Any, tmp: Path, n: int) -> tuple[str, dict[str, str]]:
    """A new, empty store per run (URL, environment): a SQLite file, a table on moto, memory."""
    if name == "sqlite":
        return f"sqlite:///{tmp / f'state-{n}.db'}", {}
    if name == "dynamodb":
        return f"dynamodb://{moto.create_table()}?endpoint={moto.endpoint}", AWS_ENV
    return "memory://", {}


# ----------------------------------------------------------------------------------------- report


def table(results: list[Measured], store: str) -> str:
    dynamo = store == "dynamodb"
    head = "| feature set | stream | reads | writes | get_many | get | put | add | add_if | put_if | delete |"
    head += (
        " first req r/w |"
        + (" DynamoDB API calls / request |" if dynamo else "")
        + " hottest items (per request) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        p = r.per_request
        spread = r.spread["writes"]
        writes = f"{p['writes']:g}" + (f" ({spread[0]}-{spread[1]})" if spread[0] != spread[1] else "")
        hot = ", ".join(f"{k} ×{v:g}" for k, v in list(r.families.items())[:6])
        cells = [r.feature, "yes" if r.stream else "no", f"{p['reads']:g}", writes]
        cells += [f"{p[k]:g}" for k in PRIMITIVES]
        cells.append(f"{r.first['reads']}/{r.first['writes']}")
        if dynamo:
            cells.append(", ".join(f"{k} {v:g}" for k, v in r.api_calls.items()) or "-")
        cells.append(hot)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.fake_upstream import make_fake_upstream
    from tests.support.loopback import run_uvicorn_in_thread

    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        "requests": args.requests,
        "stores": {},
    }
    names = args.stores.split(",")
    if set(names) - set(STORES):
        raise SystemExit(f"unknown store in {args.stores!r}: choose from {', '.join(STORES)}")
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        upstream = stack.enter_context(run_uvicorn_in_thread(make_fake_upstream("openai", name="store-ops")))
        log_lines = stack.enter_context((OUT / "store_ops.log").open("w"))
        moto = None
        if "dynamodb" in names:
            from tests.support.moto_process import MotoProcess

            moto = MotoProcess()  # its own process: moto in this one would share the GIL
            stack.callback(moto.stop)
        tables = []
        for name in names:
            results = []
            for i, feature in enumerate(FEATURES):
                for stream in feature.streams:
                    await control(upstream, {"mode": "ok"})
                    url, environ = fresh_store(name, moto, tmp, i * 2 + stream)
                    with contextlib.redirect_stdout(log_lines):  # the request log lines
                        results.append(await measure(url, environ, feature, stream, upstream, args.requests))
            report["stores"][name] = [r.__dict__ for r in results]
            title = f"### {name} store: operations per request (median of {args.requests}, after 1)"
            tables.append(f"{title}\n\n{table(results, name)}")
            print("\n" + tables[-1])
        report["tables"] = tables
    report["load_after"] = os.getloadavg()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=20, help="measured requests per feature set (after 1)"
    )
    parser.add_argument("--stores", default="sqlite,dynamodb", help="comma list: sqlite, dynamodb, memory")
    parser.add_argument("--json", type=Path, default=OUT / "store_ops.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = asyncio.run(run(args))
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"\n{report['seconds']} s; load {report['machine']['load']} -> {report['load_after']}; {args.json}")


if __name__ == "__main__":
    main()
