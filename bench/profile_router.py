"""Where the router's CPU goes under load: py-spy samples of `tier-router serve` (default
configuration: SQLite store file, one log line per request) while wrk drives it at 32 clients.

    pip install py-spy   # into any venv; pass its path with --py-spy
    .venv/bin/python bench/profile_router.py [--stream] [--seconds 20] [--py-spy /tmp/venv/bin/py-spy]

The same processes as proxy_overhead.py (fake OpenAI upstream, the router on its generated rules);
py-spy records the router's threads (on-CPU samples only, 200 Hz) for `--seconds` while wrk runs.
Prints the top N functions by self samples and by inclusive samples (a function counted once per
stack), as a share of all samples, and buckets (SQLite, JSON, logging, pydantic, httpx/httpcore,
uvicorn/h11/httptools, asyncio, starlette, tier_router). The collapsed stacks are kept in
bench/out/profile_router/ (flamegraph.pl or speedscope can draw them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import proxy_overhead as po  # noqa: E402

OUT = ROOT / "bench" / "out" / "profile_router"
BUCKETS = (  # first match on the frame's file path, innermost frame first
    ("sqlite", ("sqlite3", "store/sqlite.py")),
    ("json (stdlib)", ("json/",)),
    ("logging / access log", ("logging/", "telemetry.py", "request_line.py")),
    ("pydantic", ("pydantic",)),
    ("httpx/httpcore (upstream client)", ("httpx/", "httpcore/", "h11/", "anyio/")),
    ("uvicorn/httptools (server)", ("uvicorn/", "httptools")),
    ("starlette", ("starlette/",)),
    ("asyncio / selectors", ("asyncio/", "selectors.py", "uvloop")),
    ("tier_router", ("tier_router/",)),
)


def frames(stack: str) -> list[tuple[str, str]]:
    """`a (file:line);b (file:line)` -> [(function, file), ...], outermost first."""
    out = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        out.append((name, where.rstrip(")").rsplit(":", 1)[0]))
    return out


def bucket(stack: list[tuple[str, str]]) -> str:
    for _, path in reversed(stack):
        for name, needles in BUCKETS:
            if any(n in path for n in needles):
                return name
    return "other"


def analyse(collapsed: Path, top: int) -> dict[str, object]:
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # --nonblocking: a sample read mid-update can be garbage; skip it
            continue
        n = int(count)
        fs = frames(stack)
        if not fs:
            continue
        total += n
        label = [f"{name} ({Path(path).parent.name}/{Path(path).name})" for name, path in fs]
        self_samples[label[-1]] += n
        for name in set(label):
            inclusive[name] += n
        buckets[bucket(fs)] += n

    def share(counter: Counter[str]) -> list[list[object]]:
        return [[k, round(100 * v / total, 1)] for k, v in counter.most_common(top)]

    return {
        "samples": total,
        "self_pct": share(self_samples),
        "inclusive_pct": share(inclusive),
        "buckets_pct (innermost matching frame)": share(buckets),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--router-store", default="")
    parser.add_argument("--floor", action="store_true", help="profile the floor proxy instead (to compare)")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    po.OUT.mkdir(parents=True, exist_ok=True)
    mode = ("floor-" if args.floor else "") + ("stream" if args.stream else "plain")
    store = args.router_store or f"sqlite:///{OUT / f'state-{mode}.db'}"
    for leftover in OUT.glob(f"state-{mode}.db*"):
        leftover.unlink()
    py = sys.executable
    load = os.getloadavg()
    with contextlib.ExitStack() as stack:
        port = po.free_port()
        upstream_cmd = [py, "-m", "tests.support.fake_upstream", "--kind", "openai", "--port", str(port)]
        upstream = stack.enter_context(po.running("upstream", upstream_cmd, port))
        po.wait_ready(upstream)
        rules = OUT / "router_rules.yaml"
        po.write_router_rules(rules, f"http://127.0.0.1:{port}/v1")
        rport = po.free_port()
        env = {**po.ROUTER_ENV, "TIER_ROUTER_STORE": store}
        cmd = po.router_command(rules, rport)
        if args.floor:
            cmd = [py, str(ROOT / "bench" / "floor_proxy.py"), "--upstream", f"http://127.0.0.1:{port}/v1"]
            cmd += ["--port", str(rport)]
        router = stack.enter_context(po.running("router", cmd, rport, env))
        po.wait_ready(router)
        script = po.write_wrk_script(po.STREAM_BODY if args.stream else po.BODY, name=f"profile_{mode}")
        wrk = shutil.which("wrk")
        if wrk is None:
            sys.exit("wrk is not installed (apt-get install -y wrk)")
        po.run_wrk(wrk, script, rport, 3, 2, 32)  # warm-up
        collapsed = OUT / f"router-{mode}.collapsed"
        result: dict[str, object] = {}
        load_thread = threading.Thread(
            target=lambda: result.update(po.run_wrk(wrk, script, rport, args.seconds + 4, 2, 32))
        )
        load_thread.start()
        cpu0 = po.cpu_seconds(router.popen.pid)
        spy = [args.py_spy, "record", "--pid", str(router.popen.pid), "--rate", "200", "--format", "raw"]
        spy += ["--duration", str(args.seconds), "--output", str(collapsed), "--nonblocking"]
        subprocess.run(spy, check=True, capture_output=True, timeout=args.seconds + 60)
        cpu1 = po.cpu_seconds(router.popen.pid)
        load_thread.join()
    report = analyse(collapsed, args.top)
    report |= {
        "mode": mode,
        "wrk_rps": result.get("rps"),
        "router_cores_busy": round((cpu1 - cpu0) / args.seconds, 2),
        "load_before": load,
        "load_after": os.getloadavg(),
    }
    (OUT / f"profile-{mode}.json").write_text(json.dumps(report, indent=1))
    print(f"### router under wrk -c32, {mode}: {report['samples']} samples, {report['wrk_rps']} req/s")
    print(f"load {load} -> {report['load_after']}; router cores busy {report['router_cores_busy']}\n")
    for key in ("buckets_pct (innermost matching frame)", "self_pct", "inclusive_pct"):
        print(f"| {key} | % |\n|---|---:|")
        for name, pct in report[key]:  # type: ignore[attr-defined]
            print(f"| {name} | {pct} |")
        print()


if __name__ == "__main__":
    main()
