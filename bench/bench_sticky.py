"""The hot-path cost of sticky conversations (issue 19): µs per request and store calls per request.

    .venv/bin/python bench/bench_sticky.py [--rounds 7] [--conversations 40] [--json PATH]

The default configuration: a fresh SQLite store file, the request log on (written to /dev/null
here), the real app in process over ASGI, a mock provider in process (no network, no latency)
so that what is measured is the router's own work. Two routers on the same rules, alternated
round by round: `conversations: {sticky: true}` (the default) and `{sticky: false}` (no
conversation identified, nothing read or written: the floor). Each round sends `--conversations`
five-turn conversations (each turn the whole history, ~0.5-2 KB, as a chat app sends it) and as
many single-turn requests (classification-style traffic: every request a first turn).

Reported per kind of request (single turn; a later turn of a conversation):
- router CPU µs per request (process time, settles drained), median over rounds and min-max;
- the difference sticky - off (the cost of stickiness), median and spread of the per-round
  differences (rounds alternate, so both routers see the same machine state);
- store calls per request (`bench/store_ops.py`'s counting store): reads and writes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "handler")]

import httpx  # noqa: E402
from tier_router.app import create_app  # noqa: E402
from tier_router.routing.loader import parse_rules  # noqa: E402
from tier_router.settings import Settings  # noqa: E402
from tier_router.store.factory import open_store  # noqa: E402

from bench.store_ops import CountingStore, summarize  # noqa: E402

TURNS = 5


def rules_doc(sticky: bool) -> dict[str, Any]:
    """Two tiers on in-process mock providers; a rule that a growing conversation crosses."""
    return {
        "version": 1,
        "providers": {
            "fast": {"kind": "mock", "base_url": "mock://fast?latency_ms=0"},
            "smart": {"kind": "mock", "base_url": "mock://smart?latency_ms=0"},
        },
        "models": {
            "small": {"provider": "fast", "id": "mock-small", "price": {"input": 0.1, "output": 0.4}},
            "large": {
                "provider": "smart",
                "id": "mock-large",
                "price": {"input": 3.0, "output": 15.0, "cached_input": 0.3},
            },
        },
        "tiers": {"budget": ["small", "large"], "premium": ["large"]},
        "default_tier": "budget",
        "rules": [{"name": "long-chat", "tier": "premium", "when": {"conversation_tokens": {"min": 300}}}],
        "conversations": {"sticky": sticky},
    }


class Router:
    def __init__(self, sticky: bool, workdir: Path) -> None:
        env = {
            "TIER_ROUTER_STORE": f"sqlite:///{workdir / ('on' if sticky else 'off')}.db",
            "TIER_ROUTER_RULES": "unused.yaml",
        }
        self.settings = Settings.from_env(env, serve=True)
        self.store = CountingStore(open_store(self.settings.store_url, settings=self.settings))
        rules = parse_rules(rules_doc(sticky), "bench-sticky.yaml")
        self.app = create_app(self.settings, rules=rules, store=self.store)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://router")
        self.serial = 0

    async def send(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        await self.app.gateway.lifecycle.drainer.drain()  # the settle and the memory's write
        return response.json()

    async def run(self, conversations: int) -> dict[str, tuple[float, dict[str, int], int]]:
        """CPU seconds, store calls and request counts per kind of request, for one round."""
        out: dict[str, tuple[float, dict[str, int], int]] = {}
        cpu, calls = 0.0, len(self.store.calls)
        for _ in range(conversations):
            self.serial += 1
            body = {
                "model": "auto",
                "messages": [{"role": "user", "content": f"Classify ticket {self.serial}."}],
            }
            started = time.process_time()
            await self.send(body)
            cpu += time.process_time() - started
        out["single turn"] = (cpu, summarize(self.store.counts(calls)), conversations)
        cpu, later = 0.0, 0
        ops: dict[str, int] = {}
        for _ in range(conversations):
            self.serial += 1
            messages = [
                {"role": "system", "content": "You are a patient tutor. Answer in detail."},
                {"role": "user", "content": f"Tell me about topic {self.serial}."},
            ]
            for turn in range(TURNS):
                calls = len(self.store.calls)
                started = time.process_time()
                answer = await self.send({"model": "auto", "messages": messages})
                if turn:  # the first turn is counted above, as single-turn traffic
                    cpu += time.process_time() - started
                    later += 1
                    for k, v in summarize(self.store.counts(calls)).items():
                        ops[k] = ops.get(k, 0) + v
                text = answer["choices"][0]["message"]["content"]
                messages += [
                    {"role": "assistant", "content": text + " " + "More detail. " * 20},
                    {"role": "user", "content": f"Follow-up {turn}: why?"},
                ]
        out["later turn"] = (cpu, ops, later)
        return out

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.app.gateway.drain()
        await self.store.aclose()


def quiet_log() -> Any:
    devnull = open(os.devnull, "w")  # noqa: SIM115 - held for the run
    sys.stdout = devnull
    return devnull


async def main_async(rounds: int, conversations: int) -> dict[str, Any]:
    real_stdout = sys.stdout
    with tempfile.TemporaryDirectory() as tmp:
        quiet_log()  # before the apps: their access log writes to the stdout they find
        routers = {"sticky": Router(True, Path(tmp)), "off": Router(False, Path(tmp))}
        try:
            for router in routers.values():  # warm-up: imports, connections, first settles
                await router.run(3)
            per_round: dict[str, dict[str, list[float]]] = {name: {} for name in routers}
            ops: dict[str, dict[str, dict[str, float]]] = {name: {} for name in routers}
            for i in range(rounds):
                order = list(routers) if i % 2 == 0 else list(reversed(routers))
                for name in order:
                    for kind, (cpu, calls, n) in (await routers[name].run(conversations)).items():
                        per_round[name].setdefault(kind, []).append(cpu / n * 1e6)
                        ops[name][kind] = {
                            k: v / n for k, v in calls.items() if k in ("reads", "writes", "get", "put")
                        }
        finally:
            sys.stdout = real_stdout
            for router in routers.values():
                await router.aclose()
    rows = []
    for kind in per_round["sticky"]:
        on, off = per_round["sticky"][kind], per_round["off"][kind]
        delta = [a - b for a, b in zip(on, off, strict=True)]
        rows.append(
            {
                "request": kind,
                "sticky_us": round(statistics.median(on), 1),
                "sticky_range": [round(min(on), 1), round(max(on), 1)],
                "off_us": round(statistics.median(off), 1),
                "off_range": [round(min(off), 1), round(max(off), 1)],
                "cost_us": round(statistics.median(delta), 1),
                "cost_range": [round(min(delta), 1), round(max(delta), 1)],
                "sticky_store": ops["sticky"][kind],
                "off_store": ops["off"][kind],
            }
        )
    return {
        "rounds": rounds,
        "conversations": conversations,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "rows": rows,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| request | sticky µs/req | off µs/req | stickiness costs µs (median, range)"
        " | store reads/writes per request (sticky; off) |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        on, off = row["sticky_store"], row["off_store"]
        lines.append(
            f"| {row['request']} | {row['sticky_us']} ({row['sticky_range'][0]}–{row['sticky_range'][1]}) "
            f"| {row['off_us']} ({row['off_range'][0]}–{row['off_range'][1]}) "
            f"| {row['cost_us']} ({row['cost_range'][0]} to {row['cost_range'][1]}) "
            f"| {on['reads']:.2f} / {on['writes']:.2f}; {off['reads']:.2f} / {off['writes']:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "bench_sticky.json")
    args = parser.parse_args()
    report = asyncio.run(main_async(args.rounds, args.conversations))
    print(table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n(JSON: {args.json})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
