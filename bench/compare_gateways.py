"""Tier-router next to LiteLLM's proxy and Portkey's open-source gateway, on one machine, one upstream.

    .venv/bin/python bench/compare_gateways.py [--runs 3] [--quick] [--only floor,router,litellm,portkey]

Every gateway proxies the same fake OpenAI upstream on 127.0.0.1 (``tests.support.fake_upstream``),
with the client, the latency loop and the wrk runs of ``proxy_overhead.py`` (imported, not copied).
One *run* starts every gateway afresh (order rotated from run to run) and measures, for each:

- cold start: process spawn until its first chat completion is answered (polled every 0.1 s);
  import: ``python -c "import <what it serves with>"`` minus a bare interpreter (Python gateways only);
- added latency at concurrency 1: p50/p99 of (gateway) minus (direct to the upstream), interleaved,
  non-streamed and streamed; the floor's row is the price of the stack, the others' minus it is theirs;
- throughput at 32 concurrent clients (``wrk -t2 -c32``), non-streamed and streamed, and the
  gateway's CPU time per request during it (``/proc``, process tree), checked against the upstream's count;
- RSS of the gateway's process tree once started (idle) and after the load (VmRSS; peak VmHWM).

Medians over ``--runs`` runs with the spread (min-max) beside them; this machine has 2 shared cores
that also run wrk and the upstream, so req/s moves by +-20 % from run to run.

Gateways (a missing one is skipped with the reason and how to install it, never a crash):

- ``floor``: ``bench/floor_proxy.py``, bare Starlette + httpx;
- ``router``: ``tier-router serve``, default configuration (SQLite store file, one log line per
  request, breakers, spend ledger), the rules of ``proxy_overhead.write_router_rules``;
- ``litellm``: the LiteLLM proxy in its own venv (see ``LITELLM_INSTALL``), a config with one model;
- ``portkey``: ``@portkey-ai/gateway`` on Node (see ``PORTKEY_INSTALL``), headless, provider and
  upstream from the ``x-portkey-*`` headers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import proxy_overhead as po  # noqa: E402

OUT = ROOT / "bench" / "out" / "compare"  # gitignored
# Outside the repo on purpose: nothing of theirs gets committed or packaged.
LITELLM_VENV = Path("/tmp/compare-litellm/venv")  # noqa: S108
PORTKEY_DIR = Path("/tmp/compare-portkey")  # noqa: S108
LITELLM_KEY = "sk-bench-0123456789abcdef0123456789abcdef"  # its proxy refuses to start without a master key
LITELLM_INSTALL = f"python3 -m venv {LITELLM_VENV} && {LITELLM_VENV}/bin/pip install 'litellm[proxy]'"
PORTKEY_INSTALL = (
    f"mkdir -p {PORTKEY_DIR} && cd {PORTKEY_DIR} && npm init -y && npm pkg set "
    "'overrides.@hono/node-server=1.13.5' && npm install @portkey-ai/gateway"
    "  # the override: Portkey-AI/gateway#1389, streams fail with 'TypeError: immutable' otherwise"
)
IMPORTS = {  # what each Python gateway imports to serve
    "floor": "import uvicorn, starlette.applications, httpx",
    "router": "import uvicorn, tier_router.app",
    "litellm": "import litellm.proxy.proxy_server",
}
MODES = {"plain": po.BODY, "stream": po.STREAM_BODY}


class NotInstalled(RuntimeError):
    """The gateway's files are not where this bench looks; the message says how to install it."""


@dataclass(frozen=True)
class Launch:
    cmd: list[str]
    env: dict[str, str]
    headers: dict[str, str]
    python: str | None  # the interpreter that runs it, for the import time


def launch_floor(upstream: str, port: int, args: argparse.Namespace) -> Launch:
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "floor_proxy.py"),
        "--upstream",
        upstream,
        "--port",
        str(port),
    ]
    return Launch(cmd, {}, po.HEADERS, sys.executable)


def launch_router(upstream: str, port: int, args: argparse.Namespace) -> Launch:
    rules = OUT / "router_rules.yaml"
    po.write_router_rules(rules, upstream)
    store = OUT / f"router-state-{port}.db"  # the default store (a SQLite file), fresh per start
    env = {**po.ROUTER_ENV, "TIER_ROUTER_STORE": f"sqlite:///{store}"}
    return Launch(po.router_command(rules, port), env, po.HEADERS, sys.executable)


def launch_litellm(upstream: str, port: int, args: argparse.Namespace) -> Launch:
    exe = args.litellm_venv / "bin" / "litellm"
    if not exe.exists():
        raise NotInstalled(f"{exe} not found; install: {LITELLM_INSTALL}")
    config = OUT / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: auto\n    litellm_params:\n      model: openai/gpt-bench\n"
        f"      api_base: {upstream}\n      api_key: {po.API_KEY}\n",
        encoding="utf-8",
    )
    # LITELLM_LOCAL_MODEL_COST_MAP: use the bundled price list instead of fetching it at start (offline here)
    env = {"LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    cmd = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    headers = {**po.HEADERS, "authorization": f"Bearer {LITELLM_KEY}"}
    return Launch(cmd, env, headers, str(args.litellm_venv / "bin" / "python"))


def launch_portkey(upstream: str, port: int, args: argparse.Namespace) -> Launch:
    server = args.portkey_dir / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    node = shutil.which("node")
    if node is None or not server.exists():
        raise NotInstalled(f"{server if node else 'node'} not found; install: {PORTKEY_INSTALL}")
    headers = {**po.HEADERS, "x-portkey-provider": "openai", "x-portkey-custom-host": upstream}
    return Launch([node, str(server), f"--port={port}", "--headless"], {}, headers, None)


GATEWAYS: dict[str, Callable[[str, int, argparse.Namespace], Launch]] = {
    "floor": launch_floor,
    "router": launch_router,
    "litellm": launch_litellm,
    "portkey": launch_portkey,
}


# ------------------------------------------------------------------------------------------ measures


def tree_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) summed over ``pid`` and its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    totals = {"VmRSS": 0, "VmHWM": 0}
    stack = [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in totals:
                    totals[key] += int(value.split()[0])  # kB
    return {"rss_mb": round(totals["VmRSS"] / 1024, 1), "peak_rss_mb": round(totals["VmHWM"] / 1024, 1)}


def import_seconds(python: str, statement: str, repeat: int = 3) -> float:
    """Median wall time of ``python -c statement`` minus that of ``python -c pass`` (fresh processes)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "handler")}

    def once(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([python, "-c", code], env=env, check=True, capture_output=True, timeout=120)
        return time.perf_counter() - started

    bare = statistics.median(once("pass") for _ in range(repeat))
    return round(statistics.median(once(statement) for _ in range(repeat)) - bare, 3)


def one_run(
    index: int, names: list[str], args: argparse.Namespace, unavailable: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Start every gateway in ``names`` afresh, measure all of them, stop them: one row per gateway."""
    rows: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        port = po.free_port()
        cmd = [sys.executable, "-m", "tests.support.fake_upstream", "--kind", "openai", "--port", str(port)]
        upstream = stack.enter_context(po.running("cmp-upstream", [*cmd, "--name", "bench"], port))
        po.wait_ready(upstream)
        base = f"http://127.0.0.1:{port}/v1"
        services: dict[str, po.Service] = {"direct": upstream}
        headers: dict[str, dict[str, str]] = {"direct": po.HEADERS}
        for name in names:
            port = po.free_port()
            try:
                launch = GATEWAYS[name](base, port, args)
            except NotInstalled as exc:
                unavailable[name] = f"not installed: {exc}"
                continue
            started = time.perf_counter()
            service = stack.enter_context(po.running(f"cmp-{name}", launch.cmd, port, launch.env))
            try:
                po.wait_ready(service, timeout=args.start_timeout, headers=launch.headers)
            except po.StartError as exc:
                unavailable[name] = f"did not start: {exc}"
                continue
            rows[name] = {"cold_start_s": round(time.perf_counter() - started, 2)}
            rows[name].update({f"idle_{k}": v for k, v in tree_memory_mb(service.popen.pid).items()})
            if launch.python and name in IMPORTS and args.imports:
                rows[name]["import_s"] = import_seconds(launch.python, IMPORTS[name])
            services[name], headers[name] = service, launch.headers
        if not rows:
            return rows  # nothing started: nothing to measure
        ports = {name: s.port for name, s in services.items()}
        wrk = shutil.which("wrk")
        for mode, request in MODES.items():
            if mode not in args.modes:
                continue
            print(f"run {index}: {mode} latency, {args.requests} x {len(ports)} targets ...", file=sys.stderr)
            cpu_before = {name: po.cpu_seconds(s.popen.pid) for name, s in services.items()}
            warmup = max(10, args.requests // 10)
            latency = po.measure_latency(ports, args.requests, warmup, request, headers)
            direct = latency.pop("direct").summary()
            for name, result in latency.items():
                summary = result.summary()
                cpu = po.cpu_seconds(services[name].popen.pid) - cpu_before[name]
                rows[name][f"{mode}_added_p50_ms"] = round((summary["p50_us"] - direct["p50_us"]) / 1000, 3)
                rows[name][f"{mode}_added_p99_ms"] = round((summary["p99_us"] - direct["p99_us"]) / 1000, 3)
                rows[name][f"{mode}_c1_cpu_us"] = round(cpu / (args.requests + warmup) * 1e6)
            if wrk is None:
                continue
            print(f"run {index}: {mode} throughput, wrk {args.wrk_seconds}s per target ...", file=sys.stderr)
            targets = {name: s for name, s in services.items() if name != "direct"}
            thr = po.measure_throughput(
                wrk, targets, upstream, args.wrk_seconds, 1, 2, request, {n: headers[n] for n in targets}
            )
            for name, result in thr.items():
                rows[name][f"{mode}_rps"] = result["rps"]
                rows[name][f"{mode}_c32_cpu_us"] = result["cpu_us_per_request"]
                rows[name][f"{mode}_c32_p99_ms"] = round(result["p99_us"] / 1000, 1)
                rows[name][f"{mode}_wrk_errors"] = sum(result["errors"].values())
                rows[name][f"{mode}_upstream_matches"] = result["upstream_matches"]
        for name in rows:
            rows[name].update({f"loaded_{k}": v for k, v in tree_memory_mb(services[name].popen.pid).items()})
    return rows


# -------------------------------------------------------------------------------------------- report


def aggregate(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per gateway and metric: the median over the runs, the min and max, and every value."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        for name, row in run.items():
            for key, value in row.items():
                out.setdefault(name, {}).setdefault(key, []).append(value)
    summary: dict[str, dict[str, Any]] = {}
    for name, metrics in out.items():
        summary[name] = {}
        for key, values in metrics.items():
            if all(isinstance(v, bool) for v in values):
                summary[name][key] = all(values)
            else:
                summary[name][key] = {
                    "median": round(statistics.median(values), 3),
                    "min": min(values),
                    "max": max(values),
                    "runs": values,
                }
    return summary


def cell(row: dict[str, Any], key: str, digits: int = 1, minus: float = 0.0) -> str:
    value = row.get(key)
    if not isinstance(value, dict):
        return "-"
    med, lo, hi = value["median"] - minus, value["min"] - minus, value["max"] - minus
    if value["min"] == value["max"]:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


COLUMNS = [  # header, key, digits
    ("cold start s", "cold_start_s", 2),
    ("import s", "import_s", 2),
    ("added p50 ms", "plain_added_p50_ms", 2),
    ("added p99 ms", "plain_added_p99_ms", 2),
    ("stream added p50 ms", "stream_added_p50_ms", 2),
    ("stream added p99 ms", "stream_added_p99_ms", 2),
    ("req/s c=32", "plain_rps", 0),
    ("stream req/s c=32", "stream_rps", 0),
    ("CPU µs/req c=32", "plain_c32_cpu_us", 0),
    ("stream CPU µs/req c=32", "stream_c32_cpu_us", 0),
    ("RSS MB idle", "idle_rss_mb", 0),
    ("RSS MB after load", "loaded_rss_mb", 0),
]


def markdown(report: dict[str, Any]) -> str:
    """The table for docs/comparison.md: median (min-max) over the runs."""
    summary, labels = report["summary"], report["labels"]
    lines = [
        "| gateway | " + " | ".join(h for h, _, _ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for name in report["gateways"]:
        if name in summary:
            cells = [cell(summary[name], key, digits) for _, key, digits in COLUMNS]
            lines.append(f"| {labels[name]} | " + " | ".join(cells) + " |")
        else:
            reason = report["unavailable"].get(name, "not measured").splitlines()[0]
            lines.append(f"| {labels[name]} | SKIPPED: {reason} |" + " |" * (len(COLUMNS) - 1))
    notes = []
    for name, row in summary.items():
        for mode in MODES:
            errors = row.get(f"{mode}_wrk_errors")
            if isinstance(errors, dict) and errors["max"]:
                notes.append(
                    f"!! {name} {mode}: wrk errors {errors['runs']} (errors make a target look faster)"
                )
            if row.get(f"{mode}_upstream_matches") is False:
                notes.append(f"!! {name} {mode}: the upstream did not see as many requests as were served")
    return "\n".join(lines + notes)


def versions(args: argparse.Namespace) -> dict[str, str | None]:
    found: dict[str, str | None] = {"tier-router": po.machine_facts()["packages"].get("tier-router")}
    probe = args.litellm_venv / "bin" / "python"
    found["litellm"] = None
    if probe.exists():
        code = "import importlib.metadata as m; print(m.version('litellm'))"
        result = subprocess.run([str(probe), "-c", code], capture_output=True, text=True, check=False)
        found["litellm"] = result.stdout.strip() or None
    package = args.portkey_dir / "node_modules" / "@portkey-ai" / "gateway" / "package.json"
    found["@portkey-ai/gateway"] = json.loads(package.read_text())["version"] if package.exists() else None
    hono = args.portkey_dir / "node_modules" / "@hono" / "node-server" / "package.json"
    found["@hono/node-server"] = json.loads(hono.read_text())["version"] if hono.exists() else None
    node = shutil.which("node")
    found["node"] = (
        subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else None
    )
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, help="fresh starts of every gateway, alternated (default 3, quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="1 run, 100 latency requests, 3 s wrk")
    parser.add_argument("--only", default=",".join(GATEWAYS), help=f"comma list from {', '.join(GATEWAYS)}")
    parser.add_argument("--modes", default="plain,stream", help="plain, stream or both (default)")
    parser.add_argument("--requests", type=int, help="latency requests per target and mode (default 500)")
    parser.add_argument("--wrk-seconds", type=int, help="wrk duration per target and mode (default 10)")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds a gateway gets to start")
    parser.add_argument("--no-imports", dest="imports", action="store_false", help="skip the import times")
    parser.add_argument("--litellm-venv", type=Path, default=LITELLM_VENV)
    parser.add_argument("--portkey-dir", type=Path, default=PORTKEY_DIR)
    parser.add_argument("--json", type=Path, default=OUT / "compare_gateways.json")
    args = parser.parse_args(argv)
    args.only = [n.strip() for n in args.only.split(",") if n.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(args.only) - set(GATEWAYS) or set(args.modes) - set(MODES):
        parser.error(f"unknown gateway or mode in {args.only} / {args.modes}")
    args.runs = args.runs or (1 if args.quick else 3)
    args.requests = args.requests or (100 if args.quick else 500)
    args.wrk_seconds = args.wrk_seconds or (3 if args.quick else 10)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    po.OUT.mkdir(parents=True, exist_ok=True)  # the processes' logs and wrk scripts
    if shutil.which("wrk") is None:
        print("!! wrk is not installed (apt-get install -y wrk): throughput SKIPPED", file=sys.stderr)
    unavailable: dict[str, str] = {}
    runs = []
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for index in range(args.runs):
        shift = index % len(args.only)
        runs.append(one_run(index + 1, args.only[shift:] + args.only[:shift], args, unavailable))
    labels = {
        "floor": "floor (Starlette + httpx)",
        "router": "tier-router (SQLite store, logs on)",
        "litellm": "LiteLLM proxy",
        "portkey": "Portkey gateway (Node)",
    }
    report = {
        "command": " ".join(
            [Path(sys.executable).name, "bench/compare_gateways.py", *(argv or sys.argv[1:])]
        ),
        "started": started,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": po.machine_facts(),
        "versions": versions(args),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "gateways": args.only,
        "labels": labels,
        "unavailable": {k: v for k, v in unavailable.items() if not any(k in run for run in runs)},
        "runs": runs,
        "summary": aggregate(runs),
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    table = markdown(report)
    print(table)
    for name, reason in report["unavailable"].items():
        print(f"{name}: SKIPPED - {reason}", file=sys.stderr)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    args.json.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    print(f"wrote {args.json} and {args.json.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
