"""Failover cost: what a rescued request adds over a clean one (issue 14).

    .venv/bin/python bench/failover.py [--rounds 60] [--json out.json]

Starts a scripted fake provider (tests/support/scripted_upstream.py) in a thread and the real
router (`tier-router serve`, default configuration: SQLite store, access log on) as a separate
process, then sends, interleaved round by round (order rotated), one request of each case:

- clean: the first model answers;
- 429 retried: the first model answers 429 with `retry-after-ms: 100`, then answers (same-model
  retry after the wait);
- 429 moved on: the first model answers 429 with `retry-after: 30` (longer than `max_wait_s`):
  the second model answers at once;
  (breakers are off, so every round meets its scripted fault)
- 500 retried: the first model answers 500, then answers (jittered 100-300 ms backoff);
- and, on a second router in front of a chunk-by-chunk scripted provider
  (tests/support/stream_script.py), streams: a clean one against one cut after two text chunks
  and finished by the next model from a prefill (mid-stream recovery).

Reports, per case, p50 / p10 / p90 of the client-side latency and the p50 added over clean.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.router_process import running_router  # noqa: E402
from tests.support.stack import (  # noqa: E402
    PROVIDER_KEY,
    PROVIDER_KEY_ENV,
    ROUTER_KEY,
    rules_for,
    scripted_upstream,
    sqlite_url,
)

STREAM_CASES = ("clean stream", "stream cut after content, recovered")


def stream_samples(rounds: int) -> dict[str, list[float]]:
    """Client time to the end of a streamed answer: clean, and recovered after a cut."""
    from tests.support.stream_script import End, Reply, chunk, stream_stack, usage

    def whole(*pieces: str) -> Reply:
        return Reply([chunk("", role=True), *(chunk(p) for p in pieces), chunk(finish="stop"), usage(20, 5)])

    cut = Reply([chunk("", role=True), chunk("The quick "), chunk("brown ")], end=End.CUT)
    out: dict[str, list[float]] = {name: [] for name in STREAM_CASES}
    with tempfile.TemporaryDirectory() as tmp, stream_stack(Path(tmp)) as stack:
        headers = {"authorization": f"Bearer {ROUTER_KEY}"}
        with httpx.Client(headers=headers, timeout=30) as client:
            for i in range(rounds + 1):  # the first round warms up
                for name in STREAM_CASES if i % 2 else reversed(STREAM_CASES):
                    script = f"s{i}-{STREAM_CASES.index(name)}"
                    if name == "clean stream":
                        stack.app.script(script, a=[whole("The quick ", "brown ", "fox.")])
                    else:
                        stack.app.script(script, a=[cut], b=[whole("fox.")])
                    body = {
                        "model": "main",
                        "stream": True,
                        "messages": [{"role": "user", "content": f"[script={script}] Say it."}],
                    }
                    started = time.perf_counter()
                    with client.stream("POST", stack.router.url + "/v1/chat/completions", json=body) as r:
                        text = b"".join(r.iter_bytes())
                    elapsed = (time.perf_counter() - started) * 1000
                    if b"[DONE]" not in text or b"error" in text:
                        raise RuntimeError(f"{name}: the stream did not complete: {text[-300:]!r}")
                    if i:
                        out[name].append(elapsed)
    return out


CASES = {
    "clean": "",
    "429 retried (retry-after-ms 100)": "[seq:model-a-2025=429:ms100,ok]",
    "429 moved on (retry-after 30)": "[seq:model-a-2025=429:ra30]",
    "500 retried (backoff)": "[seq:model-a-2025=500,ok]",
}


def one(client: httpx.Client, url: str, script: str) -> tuple[float, str]:
    text = f"[tag={uuid.uuid4().hex[:12]}]{script} Say hi."
    body = {"model": "model-a", "messages": [{"role": "user", "content": text}], "max_tokens": 16}
    started = time.perf_counter()
    response = client.post(url + "/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed * 1000, response.headers.get("x-router-model", "")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    served: dict[str, set[str]] = {name: set() for name in CASES}
    with tempfile.TemporaryDirectory() as tmp, scripted_upstream("bench-failover") as upstream:
        work = Path(tmp)
        # Breakers off: each case must meet the fault it scripts, not a breaker the previous
        # round's faults opened (that path is measured by the breaker tests).
        rules = rules_for(upstream.url, budgets={}, breakers={"enabled": False})
        env = {PROVIDER_KEY_ENV: PROVIDER_KEY}
        with running_router(work, rules, key=ROUTER_KEY, store_url=sqlite_url(work), env=env) as router:
            headers = {"authorization": f"Bearer {ROUTER_KEY}"}
            with httpx.Client(headers=headers, timeout=30) as client:
                for script in CASES.values():  # warm-up: connections, caches
                    one(client, router.url, script)
                names = list(CASES)
                for i in range(args.rounds):
                    order = names[i % len(names) :] + names[: i % len(names)]
                    for name in order:
                        ms, model = one(client, router.url, CASES[name])
                        samples[name].append(ms)
                        served[name].add(model)
    streams = stream_samples(args.rounds)
    rows = []
    for name, values in [*samples.items(), *streams.items()]:
        baseline = samples["clean"] if name in samples else streams["clean stream"]
        clean = statistics.median(baseline)
        p50 = statistics.median(values)
        rows.append(
            {
                "case": name,
                "p50_ms": round(p50, 2),
                "p10_ms": round(pct(values, 0.1), 2),
                "p90_ms": round(pct(values, 0.9), 2),
                "added_p50_ms": round(p50 - clean, 2),
                "served_by": sorted(served.get(name, {"-"})),
            }
        )
    report = {
        "rounds": args.rounds,
        "machine": {"python": platform.python_version(), "machine": platform.machine()},
        "cases": rows,
    }
    print("| case | p50 ms | p10–p90 ms | added p50 ms | served by |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        spread = f"{row['p10_ms']}–{row['p90_ms']}"
        served_by = ", ".join(row["served_by"])
        print(f"| {row['case']} | {row['p50_ms']} | {spread} | {row['added_p50_ms']} | {served_by} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
