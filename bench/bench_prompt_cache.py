"""What automatic Anthropic cache breakpoints cost per request (issue 19, docs/prompt-cache.md):
`providers.anthropic_cache.mark` on a body `providers.anthropic.build_request` made, beside the
cost of building that body. Nothing runs when the feature is off (the Decision carries None).

    python bench/bench_prompt_cache.py [--turns 1 10 50]

Prints microseconds per request (best of 5 repeats).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from tier_router.providers.anthropic import build_request
from tier_router.providers.anthropic_cache import mark

TEXT = "The router forwards requests to providers and keeps track of costs. " * 80  # ~1,400 tokens
REPEATS = 5
N = 2000


def body(turns: int) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": TEXT}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"{TEXT} {i}"}, {"role": "assistant", "content": TEXT}]
    return {"model": "auto", "messages": [*messages, {"role": "user", "content": "and now?"}]}


def best_us(run: Any, bodies: Any) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        items = bodies()
        started = time.perf_counter()
        for item in items:
            run(item)
        best = min(best, (time.perf_counter() - started) / len(items) * 1e6)
    return best


def measure(request: dict[str, Any]) -> tuple[float, float]:
    """(build, mark) in microseconds for one request shape."""
    built = best_us(lambda b: build_request(b, "claude-x"), lambda: [request] * N)
    marked = best_us(lambda b: mark(b, 1024), lambda: [build_request(request, "claude-x") for _ in range(N)])
    return built, marked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[1, 10, 50])
    args = parser.parse_args()
    for turns in args.turns:
        built, marked = measure(body(turns))
        print(
            f"{turns:>3} earlier turns ({2 * turns + 2} msgs): build {built:7.1f} us, mark {marked:6.1f} us"
        )


if __name__ == "__main__":
    main()
