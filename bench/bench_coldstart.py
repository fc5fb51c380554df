"""Cold start of the BUILT Lambda artifact: init (import of the handler module, which builds the
app) + the first Function URL event, in fresh python3.12 processes with only the artifact and
the standard library on sys.path, bytecode writes off (as on Lambda, /var/task is read-only).

    .venv/bin/python bench/bench_coldstart.py [--runs 10] [--json out.json] [--importtime 25]

Build first: `bash .ci/sam.sh` (the arm64 deployable plus, on x86_64 hosts, an x86_64 copy from
the same recipe, which is what runs here). Rows, each the median of --runs fresh processes:

- memory://            the router alone (store isolated), its rules compiled as the build
                       compiles the artifact's (`python -m tier_router.routing.compiled`,
                       run with the artifact's own code: docs/coldstart.md);
- memory://, rules not compiled   the same rules file without its compiled form (the full
                       loader: YAML + pydantic at init, one warning line);
- dynamodb (moto)      the same with state in DynamoDB: moto on 127.0.0.1, a new table;
- memory://, no .pyc   the artifact with its bytecode deleted = what SAM's default Python
                       builder ships (it precompiles nothing);
- library floor        a fresh process (same flags and preamble) importing only the third-party
                       and standard-library modules the router's init imports (the artifact's
                       sys.modules after init, minus tier_router.*): nothing built, nothing
                       served. Router minus floor = the router's own init and first request.
                       Alternated with the memory:// row, run by run;
- memory://, baseline  with --baseline DIR: another built artifact (e.g. main's), its rules
                       compiled by its own code, alternated with the two rows above.
--quick: only those two or three rows.

The provider is the fake OpenAI upstream (tests/support/fake_upstream.py) on 127.0.0.1, in this
process. Peak RSS is the child's VmHWM (/proc/self/status): its `getrusage` ru_maxrss is also
reported, but Linux carries the parent's RSS at fork/exec into it (it read 106 MB here only
because this process had imported moto). Process CPU is the child's user+sys time (interpreter
start and exit included), the figure least disturbed by a busy machine; "init+first CPU" is the
child's CPU time during the import and the first request alone (the floor's: its imports).
Lambda at 1024 MB gives a function roughly 0.6 of a vCPU.
Size is the unzipped (and zipped) size of the artifact, everything included.
Targets: init + first request <= 250 ms, RSS <= 60 MB, package <= 10 MB.
Not measurable here: Lambda's own runtime start-up and code download, and Graviton's speed —
this machine's numbers are for comparing builds, not a Lambda SLA.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.deploy.conftest import (  # noqa: E402
    CHILD,
    HOST_MACHINE,
    artifact_machines,
    base_env,
    candidate_artifacts,
    find_python312,
    load_event,
    rules_for,
)

TARGETS = {"init_plus_first_ms": 250, "rss_mb": 60, "package_mb": 10}
ROUTER_KEY = "rk-bench-coldstart-0123456789"


def find_artifact(explicit: str | None) -> Path:
    candidates = [Path(explicit)] if explicit else candidate_artifacts()
    for path in candidates:
        if (path / "tier_router").is_dir() and artifact_machines(path) == {HOST_MACHINE}:
            return path.resolve()
    sys.exit(f"no built artifact for {HOST_MACHINE} in {[str(c) for c in candidates]}: run .ci/sam.sh")


def compile_rules(python: str, artifact: Path, rules: Path) -> None:
    """The rules file's compiled form, made by the artifact's code (as handler/Makefile does)."""
    subprocess.run(
        [python, "-B", "-m", "tier_router.routing.compiled", str(rules)],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(artifact)},
        cwd=artifact,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def size_of(artifact: Path) -> dict[str, float]:
    unzipped = files = 0
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(artifact.rglob("*")):
            if path.is_file():
                unzipped += path.stat().st_size
                files += 1
                zf.write(path, path.relative_to(artifact))
    return {"unzipped_mb": unzipped / 1e6, "zipped_mb": buffer.tell() / 1e6, "files": files}


def biggest(artifact: Path, n: int = 8) -> list[tuple[str, float]]:
    sizes: dict[str, int] = {}
    for path in artifact.rglob("*"):
        if path.is_file():
            top = path.relative_to(artifact).parts[0]
            sizes[top] = sizes.get(top, 0) + path.stat().st_size
    return [(k, v / 1e6) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:n]]


def run_child(
    python: str, artifact: Path, env: dict[str, str], events: list[dict[str, Any]], extra: list[str]
) -> tuple[dict[str, Any], float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(json.dumps({"events": events}))
        started = time.perf_counter()
        proc = subprocess.run(
            [python, "-I", "-S", "-B", *extra, str(CHILD), str(artifact), str(job), str(result)],
            env=env,
            cwd=artifact,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"child failed:\n{proc.stderr[-3000:]}")
        return json.loads(result.read_text()), wall, proc.stderr


def sample_router(
    python: str, artifact: Path, env: dict[str, str], event: dict[str, Any]
) -> dict[str, float]:
    """One fresh process: init (import of the handler module) and the first request."""
    report, wall, _ = run_child(python, artifact, env, [event], [])
    result = report["invokes"][0]["result"]
    if result["statusCode"] != 200:
        sys.exit(f"{artifact}: first request answered {result['statusCode']}: {result.get('body')}")
    init = report["import_s"] * 1000
    first = report["invokes"][0]["duration_s"] * 1000
    return {
        "init_ms": init,
        "first_request_ms": first,
        "init_plus_first_ms": init + first,
        "init_plus_first_cpu_ms": (report["import_cpu_s"] + report["invokes"][0]["cpu_s"]) * 1000,
        "process_wall_ms": wall * 1000,
        "rss_mb": (report["vmhwm_kb"] or report["maxrss_kb"]) / 1024,
        "ru_maxrss_mb": report["maxrss_kb"] / 1024,
        "process_cpu_ms": report["cpu_s"] * 1000,
    }


def measure(
    name: str, python: str, artifact: Path, env: dict[str, str], event: dict[str, Any], runs: int
) -> dict[str, Any]:
    return summarize(name, [sample_router(python, artifact, env, event) for _ in range(runs)])


def alternate(arms: dict[str, Any], runs: int) -> list[dict[str, Any]]:
    """Each arm (name -> a function taking no argument and returning one sample) run once per
    round, `runs` rounds: a busy spell of the machine hurts every arm alike."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    for _ in range(runs):
        for name, sample in arms.items():
            samples[name].append(sample())
    return [summarize(name, rows) for name, rows in samples.items()]


INIT_MODULES = """
import json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import tier_router.lambda_entry
print(json.dumps([m for m in sys.modules if m not in before]))
"""

FLOOR = """
import time
STARTED = time.perf_counter()
import importlib, json, os, resource, sys, sysconfig, types, typing  # what artifact_child imports first
sys.path.insert(0, sys.argv[1])
started, cpu = time.perf_counter(), time.process_time()
for name in json.loads(sys.argv[2]):
    importlib.import_module(name)
import_s, import_cpu_s = time.perf_counter() - started, time.process_time() - cpu
usage = resource.getrusage(resource.RUSAGE_SELF)
with open("/proc/self/status", encoding="ascii") as f:
    hwm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({"import_s": import_s, "import_cpu_s": import_cpu_s, "vmhwm_kb": hwm_kb,
                  "cpu_s": usage.ru_utime + usage.ru_stime, "modules": len(sys.modules)}))
"""


def library_modules(python: str, artifact: Path, env: dict[str, str]) -> list[str]:
    """What the handler's init imports besides the router itself (third-party and standard
    library, in import order): the library floor's import list."""
    proc = subprocess.run(
        [python, "-I", "-S", "-B", "-c", INIT_MODULES, str(artifact)],
        env=env,
        cwd=artifact,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    names = json.loads(proc.stdout.strip().splitlines()[-1])
    return [n for n in names if n != "tier_router" and not n.startswith("tier_router.")]


def sample_floor(python: str, artifact: Path, env: dict[str, str], modules: list[str]) -> dict[str, float]:
    """The library floor, once: a fresh process (same flags, same preamble as artifact_child)
    that imports only `modules`; no app is built, no request served. The router's init minus
    this is the router's own (its modules and create_app)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [python, "-I", "-S", "-B", "-c", FLOOR, str(artifact), json.dumps(modules)],
        env=env,
        cwd=artifact,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    wall = time.perf_counter() - started
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "init_ms": report["import_s"] * 1000,
        "first_request_ms": 0.0,
        "init_plus_first_ms": report["import_s"] * 1000,
        "init_plus_first_cpu_ms": report["import_cpu_s"] * 1000,
        "process_wall_ms": wall * 1000,
        "rss_mb": report["vmhwm_kb"] / 1024,
        "ru_maxrss_mb": report["vmhwm_kb"] / 1024,
        "process_cpu_ms": report["cpu_s"] * 1000,
    }


def summarize(name: str, samples: list[dict[str, float]]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "runs": len(samples)}
    for key in samples[0]:
        values = [s[key] for s in samples]
        row[key] = statistics.median(values)
        row[f"{key}_min"], row[f"{key}_max"] = min(values), max(values)
    return row


def importtime(
    python: str, artifact: Path, env: dict[str, str], event: dict[str, Any], top: int
) -> dict[str, list[tuple[str, float, float]]]:
    """One run under `-X importtime`: the modules with the largest cumulative and self times."""
    _, _, stderr = run_child(python, artifact, env, [event], ["-X", "importtime"])
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self [us]" not in line:
            own, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
            rows.append((name, int(own) / 1000, int(cumulative) / 1000))
    return {
        "by_cumulative": sorted(rows, key=lambda r: -r[2])[:top],
        "by_self": sorted(rows, key=lambda r: -r[1])[:top],
    }


def store_ops(python: str, artifact: Path, env: dict[str, str], event: dict[str, Any], upstream: str) -> list:
    """DynamoDB calls per request, counted at moto: one process serves 1 + N requests (warm),
    for the rules file with no spend sections, with rate limits, with limits + a budget."""
    import threading

    from tests.support import moto_server

    calls: list[tuple[str, int]] = []
    lock = threading.Lock()
    original = moto_server.SerializedWSGI.__call__

    def counting(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        op = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        body = environ["wsgi.input"].getvalue()
        keys = body.count(b'"pk"') if op == "BatchGetItem" else 1
        with lock:
            calls.append((op, keys))
        return original(self, environ, start_response)

    moto_server.SerializedWSGI.__call__ = counting  # type: ignore[method-assign]
    rows = []
    moto = moto_server.MotoServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for label, extra in (
                ("no spend sections", {}),
                ("limits", {"limits": {"requests_per_minute": 1000}}),
                ("limits + budget", {"limits": {"requests_per_minute": 1000}, "budgets": {"daily_usd": 100}}),
            ):
                spec = {k: v for k, v in rules_for(upstream).items() if k not in ("limits", "budgets")}
                rules = Path(tmp) / f"{len(rows)}.yaml"
                rules.write_text(json.dumps({**spec, **extra}))
                per_run = []
                for events in ([event], [event] * 6):  # cold: 1 request; warm: 5 more
                    table = f"ops-{uuid.uuid4().hex[:10]}"
                    moto.create_table(table)
                    calls.clear()
                    store = f"dynamodb://{table}?endpoint={moto.endpoint}"
                    run_env = {**env, "TIER_ROUTER_RULES": str(rules), "TIER_ROUTER_STORE": store}
                    report, _, _ = run_child(python, artifact, run_env, events, [])
                    assert all(i["result"]["statusCode"] == 200 for i in report["invokes"])
                    counts: dict[str, int] = {}
                    for op, _keys in calls:
                        counts[op] = counts.get(op, 0) + 1
                    per_run.append(counts)
                first, six = per_run
                warm = {op: (six.get(op, 0) - first.get(op, 0)) / 5 for op in set(six) | set(first)}
                rows.append({"rules": label, "first_request": first, "per_warm_request": warm})
    finally:
        moto.stop()
        moto_server.SerializedWSGI.__call__ = original  # type: ignore[method-assign]
    return rows


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "machine": platform.machine(),
        "cpu": model,
        "loadavg": os.getloadavg(),
        "kernel": platform.release(),
    }


def print_rows(artifact: Path, runs: int, rows: list[dict[str, Any]]) -> None:
    print(f"artifact {artifact}  ({runs} fresh processes per row, medians)")
    print(f"machine  {machine()}")
    header = (
        f"| {'row':<30} | init ms | first req ms | init+first ms (min-max) | init+first CPU ms"
        " | process ms | process CPU ms | peak RSS MB |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        low, high = r["init_plus_first_ms_min"], r["init_plus_first_ms_max"]
        spread = f"{r['init_plus_first_ms']:.0f} ({low:.0f}-{high:.0f})"
        cpu = r.get("init_plus_first_cpu_ms")  # artifact_child reports it since issue 18
        print(
            f"| {r['name']:<30} | {r['init_ms']:7.0f} | {r['first_request_ms']:12.1f} | {spread:>23} |"
            f" {'-' if cpu is None else f'{cpu:.0f}':>17} | {r['process_wall_ms']:10.0f} |"
            f" {r['process_cpu_ms']:14.0f} | {r['rss_mb']:11.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", help="built artifact dir (default: the host-native one in .aws-sam)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--importtime", type=int, default=0, metavar="N", help="print the top N imports")
    parser.add_argument("--store-ops", action="store_true", help="only count DynamoDB calls per request")
    parser.add_argument(
        "--baseline", type=Path, help="another built artifact (e.g. main's): its memory:// row, alternated"
    )
    parser.add_argument("--quick", action="store_true", help="only the memory:// rows and the library floor")
    args = parser.parse_args(argv)

    from tests.support.fake_upstream import make_fake_upstream
    from tests.support.loopback import run_uvicorn_in_thread
    from tests.support.moto_server import MotoServer

    artifact = find_artifact(args.artifact)
    deployable = ROOT / ".aws-sam" / "build" / "RouterFunction"
    python = find_python312()
    if python is None:
        sys.exit("python3.12 not found")
    event = load_event("function_url_chat_base64.json", f"Bearer {ROUTER_KEY}")
    rows = []
    with (
        run_uvicorn_in_thread(make_fake_upstream("openai", name="fake-openai"), lifespan="off") as upstream,
        tempfile.TemporaryDirectory() as tmp,
    ):
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(json.dumps(rules_for(upstream)))
        env: dict[str, str] = {
            **base_env(),
            "TIER_ROUTER_RULES": str(rules),
            "TIER_ROUTER_STORE": "memory://",
            "TIER_ROUTER_API_KEYS": f"bench={ROUTER_KEY}",
            "TIER_ROUTER_LOG_REQUESTS": "1",
            "FAKE_OPENAI_KEY": "sk-fake-upstream-key-123456",
        }
        if args.store_ops:
            ops = store_ops(python, artifact, env, event, upstream)
            for row in ops:
                print(row)
            print(json.dumps({"store_ops": ops}))
            return 0
        compiles = (artifact / "tier_router" / "routing" / "compiled.py").exists()  # not before issue 18
        if compiles:
            compile_rules(python, artifact, rules)
        run_child(python, artifact, env, [event], [])  # warm the OS page cache, as Lambda's is warm
        floor_modules = library_modules(python, artifact, env)
        arms = {
            "memory://": lambda: sample_router(python, artifact, env, event),
            f"library floor ({len(floor_modules)} modules)": lambda: sample_floor(
                python, artifact, env, floor_modules
            ),
        }
        if args.baseline:
            baseline = args.baseline.resolve()
            base_rules = Path(tmp) / "baseline" / "rules.yaml"
            base_rules.parent.mkdir()
            base_rules.write_text(rules.read_text())
            if (baseline / "tier_router" / "routing" / "compiled.py").exists():
                compile_rules(python, baseline, base_rules)
            base_env_ = {**env, "TIER_ROUTER_RULES": str(base_rules)}
            run_child(python, baseline, base_env_, [event], [])
            arms["memory://, baseline"] = lambda: sample_router(python, baseline, base_env_, event)
        rows.extend(alternate(arms, args.runs))
        if args.quick:
            print_rows(artifact, args.runs, rows)
            quick = {"artifact": str(artifact), "machine": machine(), "rows": rows}
            print(json.dumps(quick))
            if args.json:
                args.json.write_text(json.dumps(quick, indent=2))
            return 0
        full = Path(tmp) / "full" / "rules.yaml"
        full.parent.mkdir()
        full.write_text(rules.read_text())
        if compiles:
            not_compiled = {**env, "TIER_ROUTER_RULES": str(full)}
            rows.append(
                measure("memory://, rules not compiled", python, artifact, not_compiled, event, args.runs)
            )

        moto = MotoServer().start()
        try:
            table = f"bench-{uuid.uuid4().hex[:10]}"
            moto.create_table(table)
            dynamo_env = {**env, "TIER_ROUTER_STORE": f"dynamodb://{table}?endpoint={moto.endpoint}"}
            rows.append(measure("dynamodb (moto)", python, artifact, dynamo_env, event, args.runs))
        finally:
            moto.stop()

        no_pyc = Path(tmp) / "RouterFunction"
        shutil.copytree(artifact, no_pyc, ignore=shutil.ignore_patterns("__pycache__"))
        run_child(python, no_pyc, env, [event], [])
        rows.append(measure("memory://, no .pyc", python, no_pyc, env, event, args.runs))

        imports = importtime(python, artifact, env, event, args.importtime) if args.importtime else None

    sizes = {"measured": size_of(artifact)}
    if deployable.is_dir() and deployable.resolve() != artifact:
        sizes["deployable"] = size_of(deployable)
    package_mb = sizes.get("deployable", sizes["measured"])["unzipped_mb"]
    results = {
        "artifact": str(artifact),
        "python": subprocess.run([python, "-V"], capture_output=True, text=True, check=True).stdout.strip(),
        "machine": machine(),
        "rows": rows,
        "sizes": sizes,
        "biggest": biggest(deployable if deployable.is_dir() else artifact),
        "targets": TARGETS,
        "met": {
            "init_plus_first_ms": rows[0]["init_plus_first_ms"] <= TARGETS["init_plus_first_ms"],
            "rss_mb": rows[0]["rss_mb"] <= TARGETS["rss_mb"],
            "package_mb": package_mb <= TARGETS["package_mb"],
        },
        "importtime": imports,
    }

    print_rows(artifact, args.runs, rows)
    for label, s in sizes.items():
        print(
            f"size ({label}): {s['unzipped_mb']:.2f} MB unzipped, {s['zipped_mb']:.2f} MB zipped,"
            f" {s['files']} files"
        )
    print("biggest: " + ", ".join(f"{k} {v:.2f}" for k, v in results["biggest"]))
    print(f"targets {TARGETS} met {results['met']}")
    if imports:
        print("top imports by cumulative ms (self ms):")
        for name, own, cumulative in imports["by_cumulative"]:
            print(f"  {cumulative:8.1f} ({own:6.1f})  {name}")
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
