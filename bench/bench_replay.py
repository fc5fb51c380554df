"""Replay throughput and memory: how fast `tier-router replay` re-routes and prices a log.

    .venv/bin/python bench/bench_replay.py [--lines 200000] [--rounds 3] [--memory-lines 1000000] [--markdown]

Cases (in process, one thread, best and median of `--rounds`, after a warm-up):

- sample mix: rules/samples/requests.jsonl (short chat, summaries, code, long documents, router
  log lines) repeated to `--lines` lines, through rules/router.yaml with `--model auto`;
- the same with `--against` (a copy of the rules whose short-chat rule allows 120 tokens instead
  of 80): every request decided twice;
- short chat only: one small bare request body per line (the cheapest line there is).

Memory: `tier-router replay` in a child process on 100,000 and on `--memory-lines` short lines,
peak RSS from `wait4` — bounded memory means the two peaks are about equal.

Prints a table, then one JSON object. `--markdown` also prints a section for bench/RESULTS.md.
Target: >= 20,000 requests/s on the sample mix.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from tier_router.replay import replay
from tier_router.routing.loader import load_rules, parse_rules

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "rules" / "router.yaml"
SAMPLE = ROOT / "rules" / "samples" / "requests.jsonl"
TARGET = 20_000
SHORT_LINE = json.dumps(
    {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What's a good name for a grey cat?"},
        ],
        "usage": {"prompt_tokens": 24, "completion_tokens": 40},
    }
)


def write_log(path: Path, source_lines: list[str], lines: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        written = 0
        while written < lines:
            chunk = source_lines[: lines - written]
            out.write("\n".join(chunk) + "\n")
            written += len(chunk)


def timed(log: Path, rules: Any, **kwargs: Any) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    data = replay(log, rules, progress=False, **kwargs)
    return time.perf_counter() - started, data


def peak_rss_mb(log: Path) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of `tier-router replay LOG --json` in a child process."""
    cmd = [sys.executable, "-m", "tier_router.cli", "replay", str(log), "--rules", str(SHIPPED), "--json"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"replay child failed with {proc.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-lines", type=int, default=1_000_000)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    load1 = os.getloadavg()[0]
    rules = load_rules(SHIPPED)
    raw = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    for rule in raw["rules"]:
        if rule["name"] == "short-chat":
            rule["when"]["last_user_tokens"]["max"] = 120
    against = parse_rules(raw, "router-short120.yaml")
    sample_lines = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        mix, short = Path(tmp) / "mix.jsonl", Path(tmp) / "short.jsonl"
        write_log(mix, sample_lines, args.lines)
        write_log(short, [SHORT_LINE], args.lines)
        cases = [
            ("sample mix", mix, {"model": "auto"}),
            ("sample mix, --against", mix, {"model": "auto", "against": against}),
            ("short chat only", short, {}),
        ]
        timed(mix, rules, model="auto")  # warm-up: imports, regex sets, caches
        for name, log, kwargs in cases:
            rates, data = [], {}
            for _ in range(args.rounds):
                seconds, data = timed(log, rules, **kwargs)
                rates.append(data["totals"]["requests"] / seconds)
            results.append(
                {
                    "case": name,
                    "lines": data["lines"]["total"],
                    "requests": data["totals"]["requests"],
                    "best_req_per_s": round(max(rates)),
                    "median_req_per_s": round(statistics.median(rates)),
                    "mb": round(log.stat().st_size / 1e6, 1),
                    "changed_tier": (data["changes"] or {}).get("changed_tier"),
                }
            )
        memory = []
        for lines in (100_000, args.memory_lines):
            log = Path(tmp) / f"mem-{lines}.jsonl"
            write_log(log, [SHORT_LINE], lines)
            rss, seconds = peak_rss_mb(log)
            memory.append({"lines": lines, "peak_rss_mb": round(rss, 1), "seconds": round(seconds, 1)})
            log.unlink()

    header = f"{'case':<24} {'lines':>9} {'MB':>7} {'best req/s':>11} {'median req/s':>13} {'changed':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        changed = "-" if r["changed_tier"] is None else f"{r['changed_tier']:,}"
        print(
            f"{r['case']:<24} {r['lines']:>9,} {r['mb']:>7} {r['best_req_per_s']:>11,}"
            f" {r['median_req_per_s']:>13,} {changed:>8}"
        )
    for m in memory:
        print(
            f"memory: {m['lines']:>9,} short lines -> peak RSS {m['peak_rss_mb']} MB"
            f" ({m['seconds']} s, whole CLI)"
        )
    target_met = results[0]["median_req_per_s"] >= TARGET
    summary = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "machine": f"{os.cpu_count()} vCPU {platform.machine()}",
        "load1": round(load1, 2),
        "rounds": args.rounds,
        "cases": results,
        "memory": memory,
        "target_req_per_s": TARGET,
        "target_met": target_met,
    }
    print(json.dumps(summary))
    if args.markdown:
        print()
        print("## Replay\n")
        print(
            f"`.venv/bin/python bench/bench_replay.py --markdown` — {summary['date']}, {summary['machine']},"
            f" Python {summary['python']}, load average {summary['load1']} at start. In process, one thread,"
            f" best / median of {args.rounds} rounds after a warm-up; requests/s counts every priced request"
            " (re-routed bodies and router log lines).\n"
        )
        print("| case | lines | MB | best req/s | median req/s | changed tier |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in results:
            changed = "-" if r["changed_tier"] is None else f"{r['changed_tier']:,}"
            print(
                f"| {r['case']} | {r['lines']:,} | {r['mb']} | {r['best_req_per_s']:,}"
                f" | {r['median_req_per_s']:,} | {changed} |"
            )
        print()
        print("| memory: short lines | peak RSS (MB) | seconds (whole CLI) |")
        print("|---|---:|---:|")
        for m in memory:
            print(f"| {m['lines']:,} | {m['peak_rss_mb']} | {m['seconds']} |")
        verdict = "met" if target_met else "NOT met"
        print(
            f"\nTarget: >= {TARGET:,} requests/s on the sample mix — median"
            f" {results[0]['median_req_per_s']:,}: {verdict}."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
