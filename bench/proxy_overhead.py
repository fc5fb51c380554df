"""Proxy overhead: what the router adds on top of the floor (a bare Starlette + httpx pass-through).

    .venv/bin/python bench/proxy_overhead.py [--quick] [--targets floor,router] [--json out.json]

Starts the fake OpenAI upstream, the floor proxy and the router (``tier-router serve``) as separate
processes on 127.0.0.1, then measures, for each target and for "direct" (straight to the upstream):

1. added latency at concurrency 1 - p50/p99 of (target) minus (direct), requests interleaved target by
   target (order rotated every round) so drift and noise hit all targets equally;
2. throughput at concurrency 32 with wrk (skipped, loudly, if wrk is not installed);
3. CPU time per request of each proxy process during the wrk run (``/proc/<pid>/stat``) - what Lambda
   bills - and checks that the upstream saw as many requests as the proxy served.

Reports router/floor ratios for added p50 (target <= 1.25), throughput (target >= 0.8) and CPU per
request in the wrk runs (target <= 1.3). The router runs in its default configuration: a fresh SQLite
store file per run and the request log on (``--router-store memory://`` to leave the store's disk out).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "proxy_overhead"  # gitignored: logs, rules file, wrk script
PATH = "/v1/chat/completions"
API_KEY = "bench-key"
TARGET_P50_RATIO = 1.25  # router added p50 / floor added p50 must stay at or below this
TARGET_RPS_RATIO = 0.8  # router req/s / floor req/s must stay at or above this
TARGET_CPU_RATIO = 1.3  # router CPU per request / floor CPU per request (wrk runs) at or below this

# A typical small chat request (~0.5 KB): what a gateway mostly sees. model "auto" lets the router's
# rules decide; the fake upstream and the floor accept any model name.
BODY = {
    "model": "auto",
    "messages": [
        {"role": "system", "content": "You are a concise assistant for an online bookshop."},
        {
            "role": "user",
            "content": "A customer ordered two paperbacks last Tuesday and the tracking page still says "
            "'label created'. Draft a short, friendly reply explaining likely causes and next steps.",
        },
    ],
    "temperature": 0.2,
    "max_tokens": 256,
}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
"""--stream: the same request, streamed (the fake sends ~19 SSE events: role, one per word, usage)."""
HEADERS = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}


# ----------------------------------------------------------------------------- router wiring (LEAD)

# LEAD: environment the router process needs (the upstream key is read via `api_key_env`);
# the state store comes from --router-store. The request log stays on, as by default (one JSON line per
# request on stdout, which `running` sends to bench/out/proxy_overhead/router.log).
ROUTER_ENV = {"BENCH_UPSTREAM_KEY": API_KEY, "TIER_ROUTER_LOG_REQUESTS": "1"}


def write_router_rules(path: Path, upstream_url: str) -> None:
    """LEAD: a rules file with one tier whose only model is served by the fake upstream.

    ``upstream_url`` is the fake's base URL including ``/v1``. Follows ``schema/`` as of
    writing; one non-matching regex rule keeps rule evaluation in the measured path, as in production.
    """
    path.write_text(
        f"""\
version: 1
providers:
  fake:
    kind: openai
    base_url: {upstream_url}
    api_key_env: BENCH_UPSTREAM_KEY
models:
  bench-model:
    provider: fake
    id: gpt-bench
    price: {{input: 0.10, output: 0.40}}
tiers:
  bench: [bench-model]
default_tier: bench
rules:
  - name: never-matches
    tier: bench
    when:
      last_user_matches: {{pattern: '\\b(prove|derive|threat model)\\b', ignore_case: true}}
""",
        encoding="utf-8",
    )


def router_command(rules: Path, port: int) -> list[str]:
    """LEAD: how to start the router; the venv's console script sits next to this interpreter."""
    exe = Path(sys.executable).parent / "tier-router"
    return [str(exe), "serve", "--rules", str(rules), "--port", str(port), "--host", "127.0.0.1"]


# ------------------------------------------------------------------------------------------ processes


class StartError(RuntimeError):
    """A target process died or never answered a valid completion."""


@dataclass
class Service:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(name: str, cmd: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[Service]:
    """Run ``cmd`` for the duration of the block; stopped with SIGTERM (then SIGKILL) whatever happens."""
    log = OUT / f"{name}.log"
    with log.open("wb") as sink:
        popen = subprocess.Popen(
            cmd,
            cwd=ROOT,
            # handler/ first: the code of THIS checkout, not whichever one the venv's editable
            # install points at (a git worktree sharing the venv would measure the other tree)
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join((str(ROOT / "handler"), str(ROOT))),
                **(env or {}),
            },
            stdout=sink,
            stderr=sink,
        )
    service = Service(name, port, popen, log)
    try:
        yield service
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


def post_once(port: int, timeout: float = 5.0, headers: dict[str, str] = HEADERS) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", PATH, json.dumps(BODY).encode(), headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(service: Service, timeout: float = 30.0, headers: dict[str, str] = HEADERS) -> None:
    """Until the service answers a valid ``chat.completion``; StartError with its log otherwise."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if service.popen.poll() is not None:
            raise StartError(f"{service.name} exited with {service.popen.returncode}:\n{service.log_tail()}")
        try:
            status, data = post_once(service.port, headers=headers)
            if status == 200 and json.loads(data).get("object") == "chat.completion":
                return
            last = f"HTTP {status}: {data[:300]!r}"
        except (OSError, ValueError, http.client.HTTPException) as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise StartError(f"{service.name} not ready after {timeout}s ({last}):\n{service.log_tail()}")


def upstream_requests(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/_stats")
        return int(json.loads(conn.getresponse().read())["requests"])
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants (in case the server forks workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state ppid ... utime(14) stime(15) -> indexes 11, 12 here
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        times[int(entry.name)] = int(fields[11]) + int(fields[12])
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += times.get(current, 0)
        stack.extend(children.get(current, []))
    return total / tick


def context_switches(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid`` so far (0 when it is gone)."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
    return total


# ------------------------------------------------------------------------------------------- latency


@dataclass
class Latency:
    samples_us: list[float] = field(default_factory=list)

    def pct(self, p: int) -> float:
        return statistics.quantiles(self.samples_us, n=100, method="inclusive")[p - 1]

    def summary(self) -> dict[str, float]:
        return {
            "p50_us": round(self.pct(50), 1),
            "p90_us": round(self.pct(90), 1),
            "p99_us": round(self.pct(99), 1),
            "mean_us": round(statistics.fmean(self.samples_us), 1),
        }


def measure_latency(
    ports: dict[str, int],
    n: int,
    warmup: int,
    request: dict[str, Any] = BODY,
    headers: dict[str, dict[str, str]] | None = None,
) -> dict[str, Latency]:
    """Sequential keep-alive requests, one per target per round, rotating the order every round.
    A streamed answer counts when its last byte is read, and must end with `[DONE]`.
    ``headers``: per target, instead of ``HEADERS`` (a gateway that wants its own key or routing headers)."""
    headers = headers or {}
    body = json.dumps(request).encode()
    streamed = bool(request.get("stream"))
    conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=30) for name, port in ports.items()}
    results = {name: Latency() for name in ports}
    names = list(ports)
    try:
        for i in range(warmup + n):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                conn = conns[name]
                started = time.perf_counter_ns()
                conn.request("POST", PATH, body, headers.get(name, HEADERS))
                response = conn.getresponse()
                data = response.read()
                elapsed = time.perf_counter_ns() - started
                if response.status != 200:
                    raise RuntimeError(f"{name}: HTTP {response.status} during the latency run")
                if streamed and not data.rstrip().endswith(b"data: [DONE]"):
                    raise RuntimeError(f"{name}: a stream without [DONE] during the latency run")
                if i >= warmup:
                    results[name].samples_us.append(elapsed / 1000)
    finally:
        for conn in conns.values():
            conn.close()
    return results


# ---------------------------------------------------------------------------------------- throughput

WRK_LUA = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {{"requests": %d, "duration_us": %d, "errors": {{"connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d}}, "p50_us": %d, "p90_us": %d, '
    .. '"p99_us": %d, "mean_us": %.1f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


def write_wrk_script(
    request: dict[str, Any] = BODY, headers: dict[str, str] = HEADERS, name: str = "post_chat"
) -> Path:
    path = OUT / f"{name}.lua"
    lines = "\n".join(f'wrk.headers["{key}"] = "{value}"' for key, value in headers.items())
    path.write_text(WRK_LUA.format(body=json.dumps(request), headers=lines), encoding="utf-8")
    return path


def run_wrk(
    wrk: str, script: Path, port: int, seconds: int, threads: int, connections: int
) -> dict[str, Any]:
    cmd = [
        wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(script), f"http://127.0.0.1:{port}{PATH}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    result["rps"] = round(result["requests"] / (result["duration_us"] / 1e6), 1)
    return result


def measure_throughput(
    wrk: str,
    services: dict[str, Service],
    upstream: Service,
    seconds: int,
    rounds: int,
    threads: int,
    request: dict[str, Any] = BODY,
    headers: dict[str, dict[str, str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """``rounds`` wrk runs per target, alternating targets (order rotated) so load spikes from other
    processes on the machine hit every target alike; medians per target, CPU summed over all runs.
    ``headers``: per target, instead of ``HEADERS``."""
    headers = headers or {}
    scripts = {
        name: write_wrk_script(request, headers.get(name, HEADERS), f"post_chat_{name}") for name in services
    }
    for name, service in services.items():
        run_wrk(wrk, scripts[name], service.port, 1, threads, 32)  # fill pools, warm caches
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in services}
    names = list(services)
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            pid = services[name].popen.pid
            seen_before, cpu_before = upstream_requests(upstream.port), cpu_seconds(pid)
            switches_before = context_switches(pid)
            result = run_wrk(wrk, scripts[name], services[name].port, seconds, threads, 32)
            result["cpu_s"] = cpu_seconds(pid) - cpu_before
            result["switches"] = context_switches(pid) - switches_before
            result["upstream_requests"] = upstream_requests(upstream.port) - seen_before
            runs[name].append(result)
    return {name: summarize_runs(results) for name, results in runs.items()}


def summarize_runs(results: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    seconds = sum(r["duration_us"] for r in results) / 1e6
    errors = {k: sum(r["errors"][k] for r in results) for k in results[0]["errors"]}
    upstream = sum(r["upstream_requests"] for r in results)
    return {
        "rps": round(statistics.median(r["rps"] for r in results), 1),
        "rps_runs": [r["rps"] for r in results],
        "p50_us": statistics.median(r["p50_us"] for r in results),
        "p99_us": statistics.median(r["p99_us"] for r in results),
        "requests": requests,
        "errors": errors,
        "cpu_s": round(cpu, 2),
        "cpu_us_per_request": round(cpu / max(requests, 1) * 1e6, 1),
        # voluntary context switches of the process's threads: a thread hand-off (the SQLite
        # writer, the GIL) shows here before it shows in req/s
        "switches_per_request": round(sum(r["switches"] for r in results) / max(requests, 1), 2),
        "cores_busy": round(cpu / seconds, 2),
        "upstream_requests": upstream,
        # wrk does not count requests still in flight when it stops, the upstream does
        "upstream_matches": requests <= upstream <= requests * 1.01 + 64 * len(results),
    }


# -------------------------------------------------------------------------------------------- report


def machine_facts() -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in (
        "starlette",
        "httpx",
        "httpcore",
        "uvicorn",
        "uvloop",
        "httptools",
        "sniffio",
        "tier-router",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    wrk = shutil.which("wrk")
    wrk_version = None
    if wrk:
        probe = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        wrk_version = (
            (probe.stdout or probe.stderr).splitlines()[0] if (probe.stdout or probe.stderr) else None
        )
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version,
        "packages": versions,
    }


def ratios(latency: dict[str, Any], throughput: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "router" in latency and "floor" in latency:
        floor_added = latency["floor"]["added_p50_us"]
        value = latency["router"]["added_p50_us"] / floor_added if floor_added > 0 else None
        out["added_p50_router_over_floor"] = {
            "value": value and round(value, 3),
            "target": f"<= {TARGET_P50_RATIO}",
        }
        out["added_p50_router_over_floor"]["ok"] = value is not None and value <= TARGET_P50_RATIO
    if "router" in throughput and "floor" in throughput:
        value = throughput["router"]["rps"] / throughput["floor"]["rps"]
        out["rps_router_over_floor"] = {
            "value": round(value, 3),
            "target": f">= {TARGET_RPS_RATIO}",
            "ok": value >= TARGET_RPS_RATIO,
        }
        cpu = throughput["router"]["cpu_us_per_request"] / max(
            throughput["floor"]["cpu_us_per_request"], 1e-9
        )
        out["cpu_per_request_router_over_floor"] = {
            "value": round(cpu, 3),
            "target": f"<= {TARGET_CPU_RATIO}",
            "ok": cpu <= TARGET_CPU_RATIO,
        }
    for name in ("base",):  # the other checkout's router: the same ratios, for comparison only
        if name in throughput and "floor" in throughput:
            floor = throughput["floor"]
            out[f"rps_{name}_over_floor"] = {"value": round(throughput[name]["rps"] / floor["rps"], 3)}
            cpu = throughput[name]["cpu_us_per_request"] / max(floor["cpu_us_per_request"], 1e-9)
            out[f"cpu_per_request_{name}_over_floor"] = {"value": round(cpu, 3)}
    return out


def render(report: dict[str, Any]) -> str:
    lat, thr = report["latency"], report["throughput"]
    lines = [
        f"concurrency 1, {report['config']['latency_requests']} interleaved requests per target (µs):",
        f"{'target':<8} {'p50':>8} {'p90':>8} {'p99':>8} {'added p50':>10} {'added p99':>10}"
        f" {'CPU µs/req':>11}",
    ]
    for name, row in lat.items():
        lines.append(
            f"{name:<8} {row['p50_us']:>8.0f} {row['p90_us']:>8.0f} {row['p99_us']:>8.0f}"
            f" {row.get('added_p50_us', 0):>10.0f} {row.get('added_p99_us', 0):>10.0f}"
            f" {row['cpu_us_per_request']:>11.0f}"
        )
    if thr:
        cfg = report["config"]
        lines += [
            "",
            f"wrk -t{cfg['wrk_threads']} -c32 -d{cfg['wrk_seconds']}s, median of {cfg['wrk_rounds']} runs:",
            f"{'target':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU µs/req':>11}"
            f" {'cores':>6} {'upstream':>9} {'switches':>9}",
        ]
        for name, row in thr.items():
            errors = sum(row["errors"].values())
            lines.append(
                f"{name:<8} {row['rps']:>9.0f} {row['p50_us'] / 1000:>8.2f} {row['p99_us'] / 1000:>8.2f}"
                f" {errors:>7} {row['cpu_us_per_request']:>11.0f} {row['cores_busy']:>6.2f}"
                f" {row['upstream_requests']:>9} {row['switches_per_request']:>9.2f}"
            )
    elif report.get("throughput_skipped"):
        lines += ["", f"throughput: SKIPPED - {report['throughput_skipped']}"]
        for name, row in thr.items():
            if sum(row["errors"].values()):
                lines.append(f"!! {name}: {row['errors']} - errors make a target look faster than it is")
            if not row["upstream_matches"]:
                lines.append(
                    f"!! {name}: served {row['requests']} but upstream saw {row['upstream_requests']}"
                )
    for name, ratio in report["ratios"].items():
        verdict = "" if "ok" not in ratio else ("  OK" if ratio["ok"] else "  MISSED")
        lines.append(f"{name}: {ratio['value']} (target {ratio.get('target', '-')}){verdict}")
    for name, reason in report["unavailable"].items():
        lines.append(f"{name}: UNAVAILABLE - {reason.splitlines()[0]}")
    before, after = report["load_average"]["before"][0], report["load_average"]["after"][0]
    lines.append(
        f"load average (1 min) before/after: {before:.2f} / {after:.2f} on {report['machine']['nproc']} CPUs"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 latency requests, 3 s wrk runs")
    parser.add_argument("--targets", default="floor,router", help="comma list from: floor, router")
    parser.add_argument("--requests", type=int, help="latency requests per target (default 2000, quick 300)")
    parser.add_argument("--wrk-seconds", type=int, help="wrk duration per target (default 10, quick 3)")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, help="wrk runs per target, alternated (default 3, quick 1)")
    parser.add_argument(
        "--router-store",
        default="",
        help="router state store URL (default: a fresh SQLite file per run, like `tier-router serve`'s"
        " default store; memory:// measures the router's code without the store's disk I/O)",
    )
    parser.add_argument("--stream", action="store_true", help="streamed requests (SSE) instead of plain ones")
    parser.add_argument(
        "--base-tree",
        type=Path,
        help="target `base`: the router of another checkout (its handler/ first on PYTHONPATH), e.g. "
        "/work/main, for a before/after in the same run: --targets floor,router,base --base-tree ...",
    )
    parser.add_argument("--base-store", help="target base's store URL (default: as the router's)")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--enforce", action="store_true", help="exit 1 if a router/floor target is missed")
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - {"floor", "router", "base"}
    if unknown:
        parser.error(f"unknown targets: {sorted(unknown)}")
    if "base" in args.targets and args.base_tree is None:
        parser.error("target base needs --base-tree")
    args.requests = args.requests or (300 if args.quick else 2000)
    args.wrk_seconds = args.wrk_seconds or (3 if args.quick else 10)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.router_store = args.router_store or fresh_sqlite_store()
    return args


def fresh_sqlite_store() -> str:
    """The default configuration's store (settings.DEFAULT_STORE is a SQLite file): a new file per run
    under bench/out/, so no earlier run's spend, breakers or ledger rows are read or grown."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"state-{os.getpid()}-{time.time_ns()}.db"
    return f"sqlite:///{path}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    unavailable: dict[str, str] = {}
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        port = free_port()
        upstream = stack.enter_context(
            running(
                "upstream",
                [
                    py,
                    "-m",
                    "tests.support.fake_upstream",
                    "--kind",
                    "openai",
                    "--port",
                    str(port),
                    "--name",
                    "bench",
                ],
                port,
            )
        )
        wait_ready(upstream)
        upstream_base = f"http://127.0.0.1:{port}/v1"
        services: dict[str, Service] = {"direct": upstream}
        for target in args.targets:
            port = free_port()
            if target == "floor":
                cmd = [
                    py,
                    str(ROOT / "bench" / "floor_proxy.py"),
                    "--upstream",
                    upstream_base,
                    "--port",
                    str(port),
                ]
                env = None
            else:
                rules = OUT / "router_rules.yaml"
                write_router_rules(rules, upstream_base)
                cmd = router_command(rules, port)
                store = args.router_store
                env = {**ROUTER_ENV, "TIER_ROUTER_STORE": store}
                if target == "base":  # its own fresh store file (or --base-store), its own code
                    env["TIER_ROUTER_STORE"] = args.base_store or (
                        store if store.startswith("memory:") else fresh_sqlite_store()
                    )
                    tree = args.base_tree.resolve()
                    env["PYTHONPATH"] = os.pathsep.join((str(tree / "handler"), str(tree)))
            service = stack.enter_context(running(target, cmd, port, env))
            try:
                wait_ready(service)
                services[target] = service
            except StartError as exc:
                unavailable[target] = str(exc)
                print(f"!! {target} unavailable, skipped:\n{exc}\n", file=sys.stderr)

        print(
            f"latency: {args.requests} requests x {len(services)} targets, interleaved ...", file=sys.stderr
        )
        warmup = min(200, args.requests // 5)
        cpu_before = {name: cpu_seconds(s.popen.pid) for name, s in services.items()}
        seen_before = upstream_requests(upstream.port)
        request = STREAM_BODY if args.stream else BODY
        lat = measure_latency({name: s.port for name, s in services.items()}, args.requests, warmup, request)
        latency = {name: r.summary() for name, r in lat.items()}
        served = {name: args.requests + warmup for name in services}
        served["direct"] = upstream_requests(upstream.port) - seen_before  # it also served the proxies
        for name, service in services.items():
            cpu = cpu_seconds(service.popen.pid) - cpu_before[name]
            latency[name]["cpu_us_per_request"] = round(cpu / served[name] * 1e6, 1)
        for name, row in latency.items():
            if name != "direct":
                row["added_p50_us"] = round(row["p50_us"] - latency["direct"]["p50_us"], 1)
                row["added_p99_us"] = round(row["p99_us"] - latency["direct"]["p99_us"], 1)

        throughput: dict[str, Any] = {}
        skipped = None
        wrk = shutil.which("wrk")
        if wrk is None:
            skipped = "wrk is not installed (apt-get install -y wrk); latency results are still valid"
            print(f"!! throughput SKIPPED: {skipped}", file=sys.stderr)
        else:
            runs = f"{args.rounds} x {args.wrk_seconds}s"
            print(f"throughput: wrk {runs} x {len(services)} targets, alternated ...", file=sys.stderr)
            throughput = measure_throughput(
                wrk, services, upstream, args.wrk_seconds, args.rounds, args.wrk_threads, request
            )

    report = {
        "machine": machine_facts(),
        "config": {
            "latency_requests": args.requests,
            "latency_warmup": warmup,
            "wrk_seconds": args.wrk_seconds,
            "wrk_threads": args.wrk_threads,
            "wrk_rounds": args.rounds,
            "wrk_connections": 32,
            "body_bytes": len(json.dumps(request)),
            "stream": args.stream,
            "router_store": args.router_store if "router" in args.targets else None,
            "base_tree": str(args.base_tree) if "base" in args.targets else None,
        },
        "latency": latency,
        "throughput": throughput,
        "throughput_skipped": skipped,
        "ratios": ratios(latency, throughput),
        "unavailable": unavailable,
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    if unavailable:
        return 2
    if args.enforce and not all(r.get("ok", True) for r in report["ratios"].values()):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
