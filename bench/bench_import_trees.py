"""Cold import of the Lambda handler module from two source trees, interleaved: the import of
`tier_router.lambda_entry` (which builds the app from the environment: the demo rules, a
memory store) in fresh processes, measured in the child as process CPU time (the figure least
disturbed by a busy machine), with the number of modules it leaves loaded and how many of them
are OpenTelemetry's. For "does this change cost the cold start anything" between two commits:

    git archive <base> handler | tar -x -C /tmp/base
    .venv/bin/python bench/bench_import_trees.py --runs 30 before=/tmp/base/handler after=handler

Unlike bench_coldstart.py it needs no built artifact (the trees import from the venv), so it
compares code, not packaging. Nothing of tracing is switched on: `TIER_ROUTER_*` and `OTEL_*`
variables are removed from the children's environment.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = (
    "import sys, time; t = time.process_time(); import tier_router.lambda_entry;"
    "otel = sum(m.split('.')[0] == 'opentelemetry' for m in sys.modules);"
    "print(time.process_time() - t, otel, len(sys.modules))"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("trees", nargs="+", help="NAME=PATH of a handler/ directory")
    args = parser.parse_args()
    trees = dict(tree.split("=", 1) for tree in args.trees)
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    modules: dict[str, tuple[int, int]] = {}
    for _ in range(args.runs):
        for name, path in trees.items():
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TIER_ROUTER_"))}
            env.update(
                PYTHONPATH=str(Path(path).resolve()),
                TIER_ROUTER_RULES=str(ROOT / "rules" / "local-demo.yaml"),
                TIER_ROUTER_STORE="memory://",
            )
            done = subprocess.run(
                [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
            )
            seconds, otel, loaded = done.stdout.split()
            cpu[name].append(float(seconds) * 1000)
            modules[name] = (int(otel), int(loaded))
    print(f"runs={args.runs}, CPU ms of the import (median, p25-p75, min), modules loaded")
    for name, values in cpu.items():
        values.sort()
        q = len(values) // 4
        print(
            f"{name:10} {statistics.median(values):7.1f}  {values[q]:7.1f}-{values[-q - 1]:7.1f}"
            f"  {values[0]:7.1f}  modules {modules[name][1]} (opentelemetry {modules[name][0]})"
        )


if __name__ == "__main__":
    main()
