"""Cascade cost: what validating an answer adds, and what holding a stream back costs (issue 15).

    .venv/bin/python bench/cascade.py [--rounds 60] [--json out.json]

Starts a scripted provider (tests/support/answer_script.py) in a thread and the real router
(`tier-router serve`, default configuration: SQLite store, access log on) as a separate
process, then sends, interleaved round by round (order rotated), one request of each case:

- plain, no cascade: the cheap model asked by name (no cascade applies), a 2 KB JSON answer;
- plain, validated: the same request through the `budget` tier, whose cascade checks the answer
  (json, tool_args, truncated, refusal) — it passes, so only the checks are added;
- plain, escalated: the cheap answer is invalid JSON, the premium tier answers (two calls);
- stream, live vs stream, held: the same 40-chunk answer (10 ms between chunks, ~0.4 s of
  generation) streamed through a tier without hold-back and one with `stream: hold` — the
  client's time to first byte and to the end.

Reports, per case, p50 / p10 / p90 in ms and the p50 added over its baseline.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.answer_script import Answer, answer_rules, answer_stack  # noqa: E402
from tests.support.stack import ROUTER_KEY  # noqa: E402

CHECKS = ["json", "tool_args", "truncated", "refusal"]
PLAIN = ("plain, no cascade", "plain, validated", "plain, escalated")
STREAMS = ("stream, live", "stream, held")
JSON_ANSWER = json.dumps(
    {"items": [{"name": f"item {i}", "price": i * 1.5, "tags": ["a", "b"]} for i in range(40)]}
)


def rules(url: str) -> dict[str, Any]:
    return answer_rules(
        url,
        tiers={
            "budget": {"models": ["cheap"], "cascade": {"to": "premium", "on": CHECKS}},
            "standard": {"models": ["mid"], "cascade": {"to": "premium", "on": CHECKS}},
            "held": {"models": ["mid"], "cascade": {"to": "premium", "on": CHECKS, "stream": "hold"}},
            "premium": ["good"],
        },
    )


def percentiles(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=10)
    return {"p50": round(statistics.median(samples), 2), "p10": round(q[0], 2), "p90": round(q[-1], 2)}


def run(rounds: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {name: [] for name in (*PLAIN, *STREAMS)}
    first_byte: dict[str, list[float]] = {name: [] for name in STREAMS}
    with tempfile.TemporaryDirectory() as tmp, answer_stack(Path(tmp), rules) as stack:
        url = stack.router.url + "/v1/chat/completions"
        with httpx.Client(headers={"authorization": f"Bearer {ROUTER_KEY}"}, timeout=30) as client:
            for i in range(rounds + 1):  # the first round warms up
                cases = (*PLAIN, *STREAMS)
                cases = cases[i % len(cases) :] + cases[: i % len(cases)]
                for name in cases:
                    script = f"r{i}-{cases.index(name)}"
                    good = Answer(JSON_ANSWER, completion_tokens=600)
                    cheap = Answer("{not json" if name == "plain, escalated" else JSON_ANSWER)
                    slow = Answer(JSON_ANSWER, piece=len(JSON_ANSWER) // 40 + 1)
                    slow.pause_s = 0.01
                    stack.app.script(script, cheap=[cheap], mid=[slow], good=[good])
                    model = {"plain, no cascade": "cheap", "stream, live": "standard", "stream, held": "held"}
                    body = {
                        "model": model.get(name, "budget"),
                        "messages": [{"role": "user", "content": f"[script={script}] List the items."}],
                        "response_format": {"type": "json_object"},
                        "stream": name in STREAMS,
                    }
                    started = time.perf_counter()
                    with client.stream("POST", url, json=body) as response:
                        first = None
                        for _ in response.iter_raw():
                            first = first or time.perf_counter()
                        assert response.status_code == 200, response.status_code
                    ended = time.perf_counter()
                    if i == 0:
                        continue
                    times[name].append((ended - started) * 1000)
                    if name in STREAMS and first is not None:
                        first_byte[name].append((first - started) * 1000)
    table = {name: percentiles(samples) for name, samples in times.items()}
    ttfb = {name: percentiles(samples) for name, samples in first_byte.items()}
    base = table["plain, no cascade"]["p50"]
    for name in PLAIN:
        table[name]["added_p50"] = round(table[name]["p50"] - base, 2)
    live = ttfb["stream, live"]["p50"]
    for name in STREAMS:
        ttfb[name]["added_p50"] = round(ttfb[name]["p50"] - live, 2)
    return {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "rounds": rounds,
        "end_to_end_ms": table,
        "stream_first_byte_ms": ttfb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.rounds)
    print(f"{'case':<22} {'p50 ms':>9} {'p10':>8} {'p90':>8} {'added p50':>10}")
    for name, row in result["end_to_end_ms"].items():
        added = row.get("added_p50", "")
        print(f"{name:<22} {row['p50']:>9} {row['p10']:>8} {row['p90']:>8} {added!s:>10}")
    print("\nstreams, time to first byte:")
    for name, row in result["stream_first_byte_ms"].items():
        print(f"{name:<22} {row['p50']:>9} {row['p10']:>8} {row['p90']:>8} {row['added_p50']!s:>10}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
