"""A newcomer's first run: fresh clone → `./scripts/serve --rules rules/local-demo.yaml` → ready.

    python bench/bench_first_run.py [--runs 3] [--cache cold,warm] [--json bench/out/first_run.json]

Each run clones the repository's committed HEAD into a scratch directory (no `.venv`), starts
`./scripts/serve` there, which creates the venv and installs what serving needs, and polls
`GET /healthz` until it answers 200. The time is wall clock from the start of the command to
the first 200, install included. Then the server gets SIGTERM and the clone is removed.

Caches (pip's and uv's): `cold` runs with an empty cache directory of its own (as on a fresh CI machine:
every wheel is downloaded); `warm` runs it with one shared cache directory that a first run,
not counted, fills (a second clone on the same machine). Also reported: the venv's size and
its number of installed distributions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from machine_facts import machine

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dir_mb(path: Path) -> float:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return round(total / 1e6, 1)


def one_run(
    repo: Path, cache_dir: Path, rules: str, timeout: float, command: list[str], installer: str = "auto"
) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="fresh-"))
    clone = scratch / "tier-router"
    try:
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TIER_ROUTER_", "VIRTUAL_ENV"))}
        env["PIP_CACHE_DIR"] = str(cache_dir)
        env["UV_CACHE_DIR"] = str(cache_dir / "uv")
        if installer != "auto":
            env["TIER_ROUTER_INSTALLER"] = installer  # scripts/_venv.sh
        env["PATH"] = os.pathsep.join(
            p for p in env.get("PATH", "").split(os.pathsep) if "/.venv/" not in p and p
        )
        env.pop("PYTHONPATH", None)
        log = (scratch / "serve.log").open("wb")
        start, wall_start = time.perf_counter(), time.time()
        proc = subprocess.Popen(
            [*command, "--rules", rules, "--port", str(port)],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ready = None
        with httpx.Client(timeout=1.0) as client:
            while time.perf_counter() - start < timeout and proc.poll() is None:
                try:
                    if client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        ready = time.perf_counter() - start
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        venv = clone / ".venv"
        site = list(venv.glob("lib/python*/site-packages"))
        stamps = list(venv.glob(".installed-*"))
        result = {
            "ready_s": round(ready, 2) if ready is not None else None,
            "install_s": round(stamps[0].stat().st_mtime - wall_start, 2) if stamps else None,
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "venv_mb": dir_mb(venv) if venv.exists() else None,
            "distributions": len(list(site[0].glob("*.dist-info"))) if site else None,
        }
        if ready is None:
            result["log_tail"] = (scratch / "serve.log").read_text(errors="replace")[-2000:]
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def summarize(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="repository to clone (its committed HEAD)")
    parser.add_argument("--runs", type=int, default=3, help="runs per cache mode")
    parser.add_argument("--cache", default="cold,warm", help="cache modes: cold, warm or both (comma)")
    parser.add_argument("--rules", default="rules/local-demo.yaml")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on a run after this many s")
    parser.add_argument("--command", default="./scripts/serve", help="what a newcomer runs")
    parser.add_argument("--installer", default="auto", choices=["auto", "pip"], help="TIER_ROUTER_INSTALLER")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    head = subprocess.run(
        ["git", "-C", str(args.repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    modes = [m.strip() for m in args.cache.split(",") if m.strip()]
    runs: dict[str, list[dict[str, Any]]] = {}
    warm_cache = Path(tempfile.mkdtemp(prefix="pip-cache-warm-"))
    try:
        if "warm" in modes:  # fill the shared cache first: this run is not counted
            one_run(args.repo, warm_cache, args.rules, args.timeout, args.command.split(), args.installer)
        for i in range(args.runs):  # the modes alternate: load that comes and goes hits them alike
            for mode in modes:
                cache = Path(tempfile.mkdtemp(prefix="pip-cache-cold-")) if mode == "cold" else warm_cache
                try:
                    result = one_run(
                        args.repo, cache, args.rules, args.timeout, args.command.split(), args.installer
                    )
                finally:
                    if mode == "cold":
                        shutil.rmtree(cache, ignore_errors=True)
                result["run"] = i + 1
                runs.setdefault(mode, []).append(result)
                print(f"{mode} run {i + 1}: {result}", file=sys.stderr)
    finally:
        shutil.rmtree(warm_cache, ignore_errors=True)
    summary = {}
    print(f"\nfirst run of `{args.command} --rules {args.rules}` on a fresh clone of {args.repo} @ {head}")
    print("| cache | runs | ready s (median) | min | max | install s (median) | venv MB | distributions |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, results in runs.items():
        times = [r["ready_s"] for r in results if r["ready_s"] is not None]
        stats = summarize(times)
        failed = len(results) - len(times)
        install = summarize([r["install_s"] for r in results if r["install_s"] is not None])["median"]
        summary[mode] = {**stats, "install_median": install, "runs": len(results), "failed": failed}
        print(
            f"| {mode} | {len(results)}{f' ({failed} failed)' if failed else ''} | {stats['median']} "
            f"| {stats['min']} | {stats['max']} | {install} | {results[-1]['venv_mb']} "
            f"| {results[-1]['distributions']} |"
        )
    data = {
        "machine": machine(),
        "commit": head,
        "command": args.command,
        "installer": args.installer,
        "summary": summary,
        "runs": runs,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
