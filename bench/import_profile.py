"""Where the handler's init goes: `-X importtime` of `tier_router.lambda_entry` and the init steps
timed apart, medians over fresh processes, from the source tree and (optionally) a built artifact.

    .venv/bin/python bench/import_profile.py [--runs 10] [--top 25] [--artifact DIR] [--json PATH]

Per run, two fresh children:
1. `python -X importtime -c "import tier_router.lambda_entry"` (the import builds the app: rules
   file rules/router.yaml, memory store): per-module self and cumulative µs, and the total;
2. the init steps alone, wall and process CPU: importing what builds a gateway; loading
   rules/router.yaml from its compiled form (`routing.compiled.load_rules_fast`: what Lambda
   does) the first time and again (warm: no lazy first-call work); `create_app` with those
   rules; the rest of `lambda_entry`'s imports (mangum, ...); then, for comparison, the full
   loader (`load_rules`: YAML + pydantic validation + compile, imports included).
The source tree has no compiled rules (the build makes them): they are compiled into a scratch
copy first, as handler/Makefile does.
Reported: medians (and min-max) over runs; the top N modules by median cumulative time; self
time summed by package (pydantic, starlette, httpx, yaml, re2, mangum, tier_router.<module>, ...).

`--artifact DIR` (e.g. .aws-sam/build-x86_64/RouterFunction, built by handler/Makefile): the same
with python3.12 -I -S and only the artifact on sys.path, bytecode writes off, as on Lambda.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules" / "router.yaml"
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
STEPS = """
import json, sys, time
from pathlib import Path
def now(): return time.perf_counter(), time.process_time()
marks = [("start", now())]
from tier_router.settings import Settings
from tier_router.routing.compiled import load_rules_fast
from tier_router.app import create_app
marks.append(("import app modules", now()))
rules = load_rules_fast(Path(sys.argv[1]), expect_compiled=True)
marks.append(("load_rules_fast, compiled (first)", now()))
load_rules_fast(Path(sys.argv[1]), expect_compiled=True)
marks.append(("load_rules_fast, compiled (again)", now()))
app = create_app(Settings.from_env(), rules=rules)
marks.append(("create_app", now()))
import mangum, tier_router.quality.dispatch
marks.append(("rest of lambda_entry's imports", now()))
from tier_router.routing.loader import load_rules
load_rules(Path(sys.argv[1]))
marks.append(("full load_rules, imports included (not on Lambda)", now()))
out = {b[0]: [(b[1][0] - a[1][0]) * 1e3, (b[1][1] - a[1][1]) * 1e3] for a, b in zip(marks, marks[1:])}
out["modules"] = len(sys.modules)
print(json.dumps(out))
"""


def package_of(module: str) -> str:
    """`tier_router.<module>`, the distribution's top package, or `stdlib`."""
    parts = module.split(".")
    if parts[0] == "tier_router" and len(parts) > 1:
        return "tier_router." + parts[1]
    top = parts[0]
    stdlib = sys.stdlib_module_names
    if top in stdlib or top.lstrip("_") in stdlib or top.startswith("_sysconfig"):
        return "stdlib"
    return top.lstrip("_")


def child_env(rules: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIER_ROUTER_", "OTEL_", "AWS_"))}
    env.update({"TIER_ROUTER_RULES": str(rules), "TIER_ROUTER_STORE": "memory://", "AWS_REGION": "us-east-1"})
    env.update({"TIER_ROUTER_LOG_REQUESTS": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def command(python: str, artifact: Path | None, args: list[str]) -> tuple[list[str], dict[str, str]]:
    env = child_env(compiled_copy() if artifact is None else artifact / "rules" / "router.yaml")
    if artifact is None:
        env["PYTHONPATH"] = str(ROOT / "handler")
        return [python, "-B", *args], env
    env.pop("PYTHONPATH", None)
    pre = f"import sys; sys.path.insert(0, {str(artifact)!r}); "
    if args[0] == "-c":
        args = ["-c", pre + args[1], *args[2:]]
    else:  # -X importtime -c ...
        args = [*args[:2], "-c", pre + args[3], *args[4:]]
    return [python, "-I", "-S", "-B", *args], env


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        sys.exit(f"child failed: {cmd}\n{proc.stderr[-3000:]}")
    return proc


SCRATCH = Path(tempfile.mkdtemp(prefix="import-profile-"))


def compiled_copy() -> Path:
    """rules/router.yaml and its compiled form in a scratch directory (made once)."""
    copy = SCRATCH / "router.yaml"
    if not copy.exists():
        shutil.copy(RULES, copy)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "handler")}
        subprocess.run(
            [sys.executable, "-B", "-m", "tier_router.routing.compiled", str(copy)], env=env, check=True
        )
    return copy


def importtime_once(python: str, artifact: Path | None) -> dict[str, tuple[int, int]]:
    cmd, env = command(python, artifact, ["-X", "importtime", "-c", "import tier_router.lambda_entry"])
    proc = run(cmd, env, artifact or ROOT)
    mods: dict[str, tuple[int, int]] = {}
    for line in proc.stderr.splitlines():
        m = LINE.match(line)
        if m:
            mods[m.group(4)] = (int(m.group(1)), int(m.group(2)))
    return mods


def steps_once(python: str, artifact: Path | None) -> dict[str, Any]:
    rules = compiled_copy() if artifact is None else artifact / "rules" / "router.yaml"
    cmd, env = command(python, artifact, ["-c", STEPS, str(rules)])
    return json.loads(run(cmd, env, artifact or ROOT).stdout.strip().splitlines()[-1])


def med(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def profile(python: str, artifact: Path | None, runs: int, top: int) -> dict[str, Any]:
    imports, steps = [], []
    for _ in range(runs):  # alternate the two children
        imports.append(importtime_once(python, artifact))
        steps.append(steps_once(python, artifact))
    names = set().union(*imports)
    cumulative = {n: statistics.median(r.get(n, (0, 0))[1] for r in imports) for n in names}
    self_time = {n: statistics.median(r.get(n, (0, 0))[0] for r in imports) for n in names}
    by_package: dict[str, float] = defaultdict(float)
    for n, us in self_time.items():
        by_package[package_of(n)] += us
    totals = [sum(s for s, _ in r.values()) / 1e3 for r in imports]
    return {
        "import_total_ms (sum of self, under -X importtime)": med(totals),
        "modules": statistics.median(len(r) for r in imports),
        "top_cumulative_ms": [
            [n, round(cumulative[n] / 1e3, 1), round(self_time[n] / 1e3, 1)]
            for n in sorted(names, key=lambda n: -cumulative[n])[:top]
        ],
        "self_ms_by_package": {
            k: round(v / 1e3, 1) for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]
        },
        "steps_ms (wall, cpu)": {
            k: {"wall": med([s[k][0] for s in steps]), "cpu": med([s[k][1] for s in steps])}
            for k in steps[0]
            if k != "modules"
        },
        "modules_after_steps": steps[0]["modules"],
    }


def print_report(name: str, report: dict[str, Any]) -> None:
    total = report["import_total_ms (sum of self, under -X importtime)"]
    print(f"\n### {name}: import tier_router.lambda_entry = {total['median']} ms median")
    print(f"({total['min']}-{total['max']}; {report['modules']:g} modules)\n")
    print("| module | cumulative ms | self ms |\n|---|---:|---:|")
    for n, cum, self_ms in report["top_cumulative_ms"]:
        print(f"| {n} | {cum} | {self_ms} |")
    print("\n| package (self time, summed) | ms |\n|---|---:|")
    for k, v in report["self_ms_by_package"].items():
        print(f"| {k} | {v} |")
    print("\n| init step | wall ms median (min-max) | CPU ms median |\n|---|---:|---:|")
    for k, v in report["steps_ms (wall, cpu)"].items():
        w, c = v["wall"], v["cpu"]
        print(f"| {k} | {w['median']} ({w['min']}-{w['max']}) | {c['median']} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--artifact", type=Path, help="a built artifact dir (run with python3.12)")
    parser.add_argument("--python312", default=shutil.which("python3.12") or "python3.12")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "import_profile.json")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    report: dict[str, Any] = {"load_before": load, "python": sys.version.split()[0]}
    report["source"] = profile(sys.executable, None, args.runs, args.top)
    print_report(f"source tree (python {report['python']})", report["source"])
    if args.artifact:
        report["artifact"] = profile(args.python312, args.artifact.resolve(), args.runs, args.top)
        print_report(f"built artifact {args.artifact} (python3.12)", report["artifact"])
    report["load_after"] = os.getloadavg()
    print(f"\nload average before/after: {load} / {report['load_after']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
