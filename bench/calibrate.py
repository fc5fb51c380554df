"""Calibrate's run time on 100,000 labelled lines (goal: under 10 s).

    .venv/bin/python bench/calibrate.py [--labels 100000] [--rounds 1]

Cases (in process, after the labels file is written; best of `--rounds`):

- requests: `{"request": <chat body>, "scores": {...}}` lines, conversation_tokens uniform in
  10..800 (~1.7 KB a line); the budget tier fails above 300 tokens and on any request that
  says "prove" (15% of them), 2% noise per score: features measured by the router's own code,
  keyword candidates counted, the threshold and keyword searched;
- features: the same labels exported without prompts (`{"features": {...}}`): thresholds only.

For each: wall and CPU seconds of the whole `calibrate()` (read, split, search, held-out
figures), of reading the labels alone, the threshold and keywords found, and the held-out
relative quality. Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tier_router.calibrate.data import load_examples
from tier_router.calibrate.run import calibrate
from tier_router.routing.loader import load_rules

GOAL_S = 10.0
TARGET = 0.95
RULES = """\
version: 1
providers:
  mock: {kind: mock, base_url: "mock://local"}
models:
  small: {provider: mock, id: small-1, price: {input: 0.10, output: 0.40}}
  large: {provider: mock, id: large-1, price: {input: 3.00, output: 15.00}}
tiers:
  budget: [small]
  premium: [large]
default_tier: premium
"""
WORDS = tuple(
    [
        "the",
        "a",
        "of",
        "to",
        "and",
        "in",
        "is",
        "it",
        "that",
        "for",
        "on",
        "with",
        "as",
        "was",
        "at",
        "by",
        "an",
        "be",
        "this",
        "from",
        "or",
        "have",
        "not",
        "are",
    ]
)


def write_labels(path: Path, n: int, *, features_only: bool, seed: int = 1) -> None:
    rng = random.Random(seed)
    filler = " ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(20_000))
    with path.open("w", encoding="utf-8") as out:
        for _ in range(n):
            tokens = rng.randint(10, 800)
            says_prove = rng.random() < 0.15
            budget = 0.0 if says_prove or tokens > 300 else 1.0
            scores = {
                "budget": 1.0 - budget if rng.random() < 0.02 else budget,
                "premium": 0.0 if rng.random() < 0.02 else 1.0,
            }
            if features_only:
                line: dict[str, Any] = {
                    "features": {"conversation_tokens": tokens, "last_user_tokens": tokens - 4},
                    "scores": scores,
                }
            else:
                chars = 4 * (tokens - 4)
                start = rng.randint(0, len(filler) - chars - 1)
                text = ("Please prove " if says_prove else "Please tell ") + filler[start : start + chars]
                body = {"messages": [{"role": "user", "content": text[:chars]}]}
                line = {"request": body, "scores": scores}
            out.write(json.dumps(line) + "\n")


def timed(call: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run_case(name: str, labels: Path, rules_path: Path, rounds: int) -> dict[str, Any]:
    rules = load_rules(rules_path)
    best: dict[str, Any] | None = None
    for _ in range(rounds):
        _, read_wall, read_cpu = timed(lambda: load_examples(labels, tuple(rules.tiers)))
        cal, wall, cpu = timed(lambda: calibrate(labels, rules, TARGET, 0.3, 0))
        if best is None or wall < best["wall_s"]:
            policy = cal.found.policy
            best = {
                "case": name,
                "labels": cal.labels,
                "file_mb": round(labels.stat().st_size / 1e6, 1),
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "read_wall_s": round(read_wall, 2),
                "read_cpu_s": round(read_cpu, 2),
                "feature": policy.feature,
                "thresholds": {tier: limit for tier, limit in policy.steps},
                "keywords": list(policy.keywords),
                "held_out_relative_quality": round(cal.held_out.relative.value, 4),
                "held_out_cost_ratio": round(cal.held_out.cost_ratio.value, 4),
                "under_goal": wall < GOAL_S,
            }
    assert best is not None
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        rules_path = directory / "router.yaml"
        rules_path.write_text(RULES, encoding="utf-8")
        for name, features_only in (("requests", False), ("features", True)):
            labels = directory / f"{name}.jsonl"
            write_labels(labels, args.labels, features_only=features_only)
            results.append(run_case(name, labels, rules_path, args.rounds))
    header = f"{'case':<10} {'labels':>8} {'MB':>6} {'wall s':>7} {'cpu s':>6} {'read s':>7}  policy"
    print(header)
    for r in results:
        policy = ", ".join(f"{t} <= {v}" for t, v in r["thresholds"].items())
        words = f" + keywords {r['keywords']}" if r["keywords"] else ""
        print(
            f"{r['case']:<10} {r['labels']:>8} {r['file_mb']:>6} {r['wall_s']:>7} {r['cpu_s']:>6} "
            f"{r['read_wall_s']:>7}  {r['feature']}: {policy}{words}; held out "
            f"{r['held_out_relative_quality']:.1%} of premium at {r['held_out_cost_ratio']:.0%} of its cost"
        )
    machine = {"python": sys.version.split()[0], "platform": platform.platform(), "goal_s": GOAL_S}
    print(json.dumps({"machine": machine, "results": results}))
    return 0 if all(r["under_goal"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
