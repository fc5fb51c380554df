"""What following conversations costs `tier-router replay` (issue 19): time and memory.

    .venv/bin/python bench/bench_replay_conversations.py [--lines 50000] [--rounds 5] [--conversations 100000]

Speed: rules/samples/requests.jsonl repeated to `--lines` lines through rules/router.yaml with
`--model auto` (as bench_replay.py's sample mix), in process, rounds alternating between the
replay as shipped and the same replay with `Turns.request` / `Turns.router` made no-ops (no
conversation identified, placed or counted); medians and spread of requests/s, and the share of
the time conversations take.

Memory: `tier-router replay --json` in a child process (peak RSS from `wait4`) on `--conversations`
distinct two-turn conversations, without `ts` (every conversation kept to the end) and with
`ts` two seconds apart (idle ones forgotten after `conversations.ttl_s`).

Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
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

from tier_router.replay import conversations, replay
from tier_router.routing.loader import load_rules

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "rules" / "router.yaml"
SAMPLE = ROOT / "rules" / "samples" / "requests.jsonl"


def rate(log: Path, rules: Any) -> float:
    started = time.perf_counter()
    data = replay(log, rules, model="auto", progress=False)
    return data["totals"]["requests"] / (time.perf_counter() - started)


def without_conversations() -> tuple[Any, Any]:
    saved = conversations.Turns.request, conversations.Turns.router
    conversations.Turns.request = lambda self, *a, **k: None  # type: ignore[method-assign]
    conversations.Turns.router = lambda self, *a, **k: None  # type: ignore[method-assign]
    return saved


def conversation_log(path: Path, n: int, timed: bool) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            first = [{"role": "user", "content": f"Question number {i}?"}]
            later = [*first, {"role": "assistant", "content": "A."}, {"role": "user", "content": "More?"}]
            for turn, messages in enumerate((first, later)):
                record: dict[str, Any] = {
                    "body": {"model": "auto", "messages": messages},
                    "usage": {"prompt_tokens": 20, "completion_tokens": 30},
                }
                if timed:
                    record["ts"] = 1_796_115_600 + 2 * i + turn
                out.write(json.dumps(record) + "\n")


def peak_rss_mb(log: Path) -> float:
    """The child's peak RSS (measured before this process replays anything: on exec, a child's
    peak starts at its parent's size, fork or vfork alike)."""
    cmd = [sys.executable, "-m", "tier_router.cli", "replay", str(log), "--rules", str(SHIPPED), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("replay child failed")
    return usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--conversations", type=int, default=100_000)
    args = parser.parse_args()
    load1 = os.getloadavg()[0]
    rules = load_rules(SHIPPED)
    lines = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    rates: dict[str, list[float]] = {"with conversations": [], "without": []}
    memory = []
    with tempfile.TemporaryDirectory() as tmp:
        for timed in (False, True):  # first: on exec, a child's peak starts at its parent's size
            log = Path(tmp) / f"conversations-{timed}.jsonl"
            conversation_log(log, args.conversations, timed)
            memory.append(
                {"conversations": args.conversations, "ts": timed, "peak_rss_mb": round(peak_rss_mb(log), 1)}
            )
        mix = Path(tmp) / "mix.jsonl"
        mix.write_text("\n".join((lines * (args.lines // len(lines) + 1))[: args.lines]) + "\n")
        rate(mix, rules)  # warm-up
        for _ in range(args.rounds):
            rates["with conversations"].append(rate(mix, rules))
            saved = without_conversations()
            try:
                rates["without"].append(rate(mix, rules))
            finally:
                conversations.Turns.request, conversations.Turns.router = saved  # type: ignore[method-assign]
    medians = {name: statistics.median(r) for name, r in rates.items()}
    share = 1 - medians["with conversations"] / medians["without"]
    print(f"{f'sample mix, {args.lines:,} lines':<32} {'median req/s':>13} {'min':>8} {'max':>8}")
    for name, r in rates.items():
        print(f"{name:<32} {medians[name]:>13,.0f} {min(r):>8,.0f} {max(r):>8,.0f}")
    print(f"conversations take {share:.0%} of the replay's time")
    for m in memory:
        print(
            f"memory: {m['conversations']:,} two-turn conversations, ts={m['ts']}:"
            f" peak RSS {m['peak_rss_mb']} MB"
        )
    summary = {
        "python": platform.python_version(),
        "machine": f"{os.cpu_count()} vCPU {platform.machine()}",
        "load1": round(load1, 2),
        "rounds": args.rounds,
        "req_per_s": {name: [round(x) for x in r] for name, r in rates.items()},
        "median_req_per_s": {name: round(v) for name, v in medians.items()},
        "conversation_share": round(share, 3),
        "memory": memory,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
