"""Run the BUILT Lambda artifact the way Lambda does, in a fresh interpreter; report as JSON.

Started by tests/deploy/test_built_artifact.py and bench/bench_coldstart.py as

    python3.12 -I -S -B artifact_child.py ARTIFACT_DIR JOB.json RESULT.json

`-I -S` leave only the standard library on sys.path (no site-packages, no PYTHON* variables,
not even this script's directory); this script then puts ARTIFACT_DIR first, as Lambda puts
/var/task. `-B` because /var/task is read-only on Lambda: nothing can cache bytecode there,
so every cold start compiles the .py files it imports unless the artifact ships .pyc files.

JOB.json: {"handler": "tier_router.lambda_entry.lambda_handler", "events": [event, ...]}.
The app reads its settings from this process's environment at import (the init phase).
RESULT.json: import time, each invocation's duration and result, peak RSS, and every
imported module that came from neither the artifact nor the standard library.

Standard library only: nothing else is importable before the artifact is on sys.path.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402


class LambdaContext(SimpleNamespace):
    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def module_origins(artifact: str) -> dict[str, list[str]]:
    """Imported modules with a file, by where the file is: artifact, stdlib or elsewhere."""
    stdlib = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}
    origins: dict[str, list[str]] = {"artifact": [], "stdlib": [], "elsewhere": []}
    for name, module in sorted(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        real = os.path.realpath(path)
        if real.startswith(artifact + os.sep):
            origins["artifact"].append(name)
        elif any(real.startswith(root + os.sep) for root in stdlib):
            origins["stdlib"].append(name)
        else:
            origins["elsewhere"].append(f"{name} ({real})")
    return origins


def main(argv: list[str]) -> int:
    artifact, job_path, result_path = os.path.realpath(argv[1]), argv[2], argv[3]
    with open(job_path, encoding="utf-8") as f:
        job: dict[str, Any] = json.load(f)
    sys.path.insert(0, artifact)
    module_name, _, attr = job.get("handler", "tier_router.lambda_entry.lambda_handler").rpartition(".")

    import_started, import_cpu = time.perf_counter(), time.process_time()
    handler = getattr(importlib.import_module(module_name), attr)
    import_s, import_cpu_s = time.perf_counter() - import_started, time.process_time() - import_cpu

    invokes = []
    for i, event in enumerate(job.get("events", [])):
        context = LambdaContext(
            aws_request_id=f"req-{i}",
            function_name=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "tier-router"),
            memory_limit_in_mb="1024",
        )
        started, cpu = time.perf_counter(), time.process_time()
        result = handler(event, context)
        duration_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
        invokes.append({"duration_s": duration_s, "cpu_s": cpu_s, "result": result})

    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:  # this process image's own peak; ru_maxrss also counts the parent's RSS before exec
        with open("/proc/self/status", encoding="ascii") as f:
            hwm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        hwm_kb = None
    report = {
        "python": sys.version,
        "sys_path": sys.path,
        "script_s": time.perf_counter() - STARTED,
        "import_s": import_s,
        "import_cpu_s": import_cpu_s,  # this process's CPU time (all threads) during the import
        "invokes": invokes,
        "maxrss_kb": usage.ru_maxrss,  # kilobytes on Linux
        "vmhwm_kb": hwm_kb,
        "cpu_s": usage.ru_utime + usage.ru_stime,  # whole process, interpreter start included
        "modules": module_origins(artifact),
    }
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(report, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
