"""What judging on Lambda adds to a sampled request: one asynchronous `Invoke` (the judge
event) before the buffered response returns.

    .venv/bin/python bench/bench_lambda_invoke.py [--n 500] [--json bench/out/lambda_invoke.json]

Measures, one awaited call at a time, `LambdaDispatch(sample)` — building the judge event,
JSON-encoding it, SigV4-signing it, the POST and the 202 — against the fake Invoke API of
tests/support/fake_lambda.py on 127.0.0.1 (its own process; signature checks off: the tests
make them). Two cases: a
fresh connection per call (a cold container's first sampled request) and the shared client's
kept-alive connection (every later one). Also the router's own CPU per call (signing and
encoding) and the event's size for a typical sample.

These are loopback numbers: on AWS, add the network round trip to the regional Lambda
endpoint (a TLS handshake on a fresh connection). Prints a Markdown table and a JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support (dev-only fakes)
sys.path.insert(0, str(ROOT / "bench"))

from machine_facts import machine  # noqa: E402
from tier_router.aws.invoke import LambdaInvoker  # noqa: E402
from tier_router.aws.sigv4 import sign  # noqa: E402
from tier_router.quality.dispatch import LambdaDispatch, judge_event  # noqa: E402
from tier_router.quality.sample import Sample  # noqa: E402
from tier_router.settings import environment_credentials  # noqa: E402

from tests.support.loopback import free_port  # noqa: E402
from tests.support.moto_server import FAKE_ENV  # noqa: E402

PROMPT = "Summarize the following support ticket in two sentences. " * 40  # ~2.3 KB of text
SAMPLE = Sample(
    request_id="b7f0c1d2e3f4a5b6",
    body={"model": "auto", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 300},
    answer="The customer cannot log in after the update; support reset the password. " * 8,
    tier="budget",
    reference="premium",
    rule="default",
    model="small",
    key="team-a",
    cost=412,
    features={"chars": len(PROMPT), "messages": 1, "last_user_tokens": 560},
)


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def ms(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50_ms": ms(0.5), "p95_ms": ms(0.95), "p99_ms": ms(0.99), "n": len(samples)}


def cpu_per_event(n: int) -> float:
    """The router's own work per judge event, no I/O: the event, its JSON, the signature (µs)."""
    credentials = environment_credentials(FAKE_ENV)
    assert credentials is not None
    url = "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/tier-router-fn/invocations"
    started = time.process_time()
    for _ in range(n):
        body = json.dumps(judge_event(SAMPLE), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event"}
        sign(
            method="POST",
            url=url,
            headers=headers,
            body=body,
            credentials=credentials,
            region="us-east-1",
            service="lambda",
        )
    return round((time.process_time() - started) / n * 1e6, 1)


async def measure(endpoint: str, n: int) -> dict[str, Any]:
    def credentials() -> Any:
        return environment_credentials(FAKE_ENV)

    def dispatch_on(client: httpx.AsyncClient) -> LambdaDispatch:
        return LambdaDispatch(
            LambdaInvoker("tier-router-fn", credentials=credentials, endpoint=endpoint, http_client=client)
        )

    results: dict[str, Any] = {}
    fresh = []
    for _ in range(max(20, n // 5)):
        async with httpx.AsyncClient() as client:
            dispatch = dispatch_on(client)
            wall = time.perf_counter()
            await dispatch(SAMPLE)
            fresh.append(time.perf_counter() - wall)
    results["fresh_connection"] = stats(fresh)
    async with httpx.AsyncClient() as client:
        dispatch = dispatch_on(client)
        for _ in range(20):
            await dispatch(SAMPLE)
        warm = []
        for _ in range(n):
            wall = time.perf_counter()
            await dispatch(SAMPLE)
            warm.append(time.perf_counter() - wall)
    results["kept_alive"] = stats(warm)
    results["event_bytes"] = len(json.dumps(judge_event(SAMPLE), ensure_ascii=False, separators=(",", ":")))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_lambda", "--port", str(port)], cwd=ROOT
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_until_up(endpoint)
        results = asyncio.run(measure(endpoint, args.n))
    finally:
        fake.terminate()
        fake.wait(10)
    results["router_cpu_us_per_event"] = cpu_per_event(2000)
    results["machine"] = machine()
    print(f"judge event: {results['event_bytes']} bytes")
    print(f"router CPU per event (JSON + SigV4, no I/O): {results['router_cpu_us_per_event']} µs")
    print("| connection | p50 ms | p95 ms | p99 ms | n |")
    print("|---|---:|---:|---:|---:|")
    for name in ("fresh_connection", "kept_alive"):
        r = results[name]
        print(f"| {name.replace('_', ' ')} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['n']} |")
    print(json.dumps(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def wait_until_up(endpoint: str, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            httpx.get(endpoint, timeout=0.5)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


if __name__ == "__main__":
    raise SystemExit(main())
