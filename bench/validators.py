"""Response validators: what validating one answer costs, in process, without any I/O.

    .venv/bin/python bench/validators.py [--iterations 2000] [--rounds 10] [--json FILE]

Each timed call is what the router does per validated request: `Ask.of(body)` (what the
request asked for), `Reply.of(completion)` (the answer as the client sees it) and
`validate(checks, reply, ask)`. Cases:

- no validators: the floor (building Ask and Reply, and `validate` with nothing to run);
- [truncated, refusal, min_length] on a typical ~770-character prose answer;
- json (json_object) on a ~2 KB JSON answer;
- json_schema, compiled schema in the cache, on the same ~2 KB answer (strict-mode order
  schema: nested objects, arrays, enums, $defs/$ref, additionalProperties false);
- tool_args: two tool calls checked against their (cached) parameters schemas;
- hostile: [refusal, min_length, must_not_match] on a 1 MB answer;
- for comparison, when installed (they are not dependencies): the same schema check with
  jsonschema (pure Python) and jsonschema-rs (Rust), parse + validate only;
- the first (uncached) compile of the order schema, and of a schema at the size bound
  (`schemas.MAX_SCHEMA_CHARS`), timed alone on an emptied cache — what the first request with a
  new schema pays once (fastjsonschema is already imported: its ~3 ms import is reported apart).

Cases run in `--rounds` rounds, order rotated each round, so a noisy neighbour hits all alike.
Reports per case: the median over rounds of the per-round median µs per call, the spread of
those round medians (min-max) and the p99 over all calls. Prints a table, then the JSON,
which it also writes to bench/out/validators.json (or --json FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine_facts import machine  # bench/ is on sys.path when run as a script
from tier_router.validators import Ask, Reply, build_validators, schemas, validate

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "validators.json"

PROSE = (
    "The committee met on a grey morning to talk about the garden, the library hours and the new "
    "bus timetable. Several neighbours asked whether the bakery would reopen in spring, and the "
    "treasurer read out the costs of the repairs to the roof of the old hall. "
) * 3

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["order_id", "status", "customer", "items", "note"],
    "properties": {
        "order_id": {"type": "string"},
        "status": {"type": "string", "enum": ["open", "paid", "shipped"]},
        "customer": {"$ref": "#/$defs/customer"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
        "note": {"type": ["string", "null"]},
    },
    "$defs": {
        "customer": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "email"],
            "properties": {"name": {"type": "string"}, "email": {"type": ["string", "null"]}},
        },
        "item": {
            "type": "object",
            "additionalProperties": False,
            "required": ["sku", "qty", "price", "tags"],
            "properties": {
                "sku": {"type": "string"},
                "qty": {"type": "integer", "minimum": 1},
                "price": {"type": "number"},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["new", "sale", "gift"]}},
            },
        },
    },
}
ORDER = {
    "order_id": "A-1234",
    "status": "paid",
    "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
    "items": [
        {"sku": f"SKU-{i:04d}", "qty": i + 1, "price": 9.99 + i, "tags": ["new", "sale"]} for i in range(22)
    ],
    "note": None,
}
WEATHER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["city", "unit"],
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
}
BOOKING = {
    "type": "object",
    "additionalProperties": False,
    "required": ["guests", "nights"],
    "properties": {
        "guests": {"type": "array", "items": {"$ref": "#/$defs/guest"}},
        "nights": {"type": "integer", "minimum": 1},
    },
    "$defs": {
        "guest": {
            "type": "object",
            "required": ["name", "age"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        }
    },
}


def completion(text: str | None, calls: list[tuple[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        message["tool_calls"] = [
            {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, (n, a) in enumerate(calls)
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 200, "total_tokens": 220},
    }


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": "Hello"}], **fields}


def wide_schema(chars: int) -> dict[str, Any]:
    """The largest schema of many small object properties under `chars` of canonical JSON."""
    n, schema = 1, {}
    while True:
        candidate = {
            "type": "object",
            "required": [f"p{i}" for i in range(n)],
            "properties": {
                f"p{i}": {
                    "type": "object",
                    "properties": {"a": {"type": "string", "enum": ["x", "y"]}, "b": {"type": "integer"}},
                    "required": ["a", "b"],
                }
                for i in range(n)
            },
        }
        if len(json.dumps(candidate, sort_keys=True, separators=(",", ":"))) > chars:
            return schema
        n, schema = n + 1, candidate


def cases() -> dict[str, Callable[[], Any]]:
    plain = body()
    typical = completion(PROSE)
    doc = json.dumps(ORDER)
    json_body = body(response_format={"type": "json_object"})
    schema_body = body(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "order", "strict": True, "schema": ORDER_SCHEMA},
        }
    )
    tools = [
        {"type": "function", "function": {"name": n, "parameters": p}}
        for n, p in (("weather", WEATHER), ("book", BOOKING))
    ]
    tool_body = body(tools=tools)
    tool_answer = completion(
        None,
        [
            ("weather", {"city": "Oslo", "unit": "c"}),
            ("book", {"guests": [{"name": "Ada", "age": 36}] * 3, "nights": 2}),
        ],
    )
    huge = completion(PROSE * (1_000_000 // len(PROSE)))
    prose_checks = build_validators(["truncated", "refusal", {"min_length": 20}], {})
    json_checks = build_validators(["json"], {})
    tool_checks = build_validators(["tool_args"], {})
    hostile_checks = build_validators(
        ["refusal", {"min_length": 20}, {"must_not_match": r"(?i)\bpassword\b"}], {}
    )

    def run(checks: tuple[Any, ...], request: dict[str, Any], answer: dict[str, Any]) -> Callable[[], Any]:
        def call() -> Any:
            return validate(checks, Reply.of(answer), Ask.of(request))

        if call() is not None:  # the scenario must measure a passing answer
            raise SystemExit(f"the bench answer failed: {call()}")
        return call

    return {
        "no validators": run((), plain, typical),
        f"[truncated, refusal, min_length], {len(PROSE)}-char prose": run(prose_checks, plain, typical),
        f"json (json_object), {len(doc) / 1024:.1f} KB": run(json_checks, json_body, completion(doc)),
        f"json_schema (cached compile), {len(doc) / 1024:.1f} KB": run(
            json_checks, schema_body, completion(doc)
        ),
        "tool_args, 2 calls (cached compile)": run(tool_checks, tool_body, tool_answer),
        "[refusal, min_length, must_not_match], 1 MB": run(hostile_checks, plain, huge),
    }


def comparison_cases() -> dict[str, Callable[[], Any]]:
    """Parse + validate the same answer with other libraries, when they are installed."""
    doc = json.dumps(ORDER)
    out: dict[str, Callable[[], Any]] = {}
    try:
        import jsonschema

        checker = jsonschema.Draft202012Validator(ORDER_SCHEMA)
        out["for comparison: jsonschema 4 (parse + validate)"] = lambda: checker.is_valid(json.loads(doc))
    except ImportError:
        pass
    try:
        import jsonschema_rs

        rs = jsonschema_rs.validator_for(ORDER_SCHEMA, offline=True)
        out["for comparison: jsonschema-rs (parse + validate)"] = lambda: rs.is_valid(json.loads(doc))
        out["for comparison: jsonschema-rs, first compile, order schema"] = lambda: (
            jsonschema_rs.validator_for(ORDER_SCHEMA, offline=True)
        )
    except ImportError:
        pass
    return out


def compile_cases() -> dict[str, Callable[[], Any]]:
    at_limit = wide_schema(schemas.MAX_SCHEMA_CHARS)

    def first_compile(schema: dict[str, Any]) -> Callable[[], Any]:
        def call() -> Any:
            schemas._cache.clear()
            if schemas.compiled_for(schema) is None:
                raise SystemExit("the bench schema could not be compiled")

        return call

    size = len(json.dumps(ORDER_SCHEMA, separators=(",", ":")))
    limit = len(json.dumps(at_limit, separators=(",", ":")))
    return {
        f"first compile, order schema ({size / 1024:.1f} KB)": first_compile(ORDER_SCHEMA),
        f"first compile, schema at the size bound ({limit / 1024:.1f} KB)": first_compile(at_limit),
    }


def measure(cases: dict[str, Callable[[], Any]], iterations: int, rounds: int) -> dict[str, dict[str, float]]:
    for fn in cases.values():
        for _ in range(min(50, iterations)):
            fn()
    labels = list(cases)
    per_round = max(1, iterations // rounds)
    medians: dict[str, list[float]] = {label: [] for label in labels}
    samples: dict[str, list[float]] = {label: [] for label in labels}
    clock = time.perf_counter_ns
    for r in range(rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            fn = cases[label]
            batch = []
            for _ in range(per_round):
                start = clock()
                fn()
                batch.append((clock() - start) / 1000)
            medians[label].append(statistics.median(batch))
            samples[label] += batch
    out = {}
    for label in labels:
        ordered = sorted(samples[label])
        out[label] = {
            "median_us": round(statistics.median(medians[label]), 1),
            "round_min_us": round(min(medians[label]), 1),
            "round_max_us": round(max(medians[label]), 1),
            "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
            "n": len(ordered),
        }
    return out


def import_ms(module: str, runs: int = 5) -> float | None:
    """Median ms to import `module` in a fresh interpreter that already imported the app."""
    code = "\n".join(
        [
            "import time, tier_router.app",
            "t = time.perf_counter()",
            f"import {module}",
            "print(time.perf_counter() - t)",
        ]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "handler")}
    times = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if done.returncode:
            return None  # not installed (jsonschema is only here for comparison)
        times.append(float(done.stdout.strip().splitlines()[-1]) * 1000)
    return round(statistics.median(times), 1)


def table(results: dict[str, dict[str, float]]) -> str:
    rows = [
        f"| {'case':<60} | {'median µs':>10} | {'round medians µs':>18} | {'p99 µs':>9} |",
        f"|{'-' * 62}|{'-' * 11}:|{'-' * 19}:|{'-' * 10}:|",
    ]
    for label, r in results.items():
        spread = f"{r['round_min_us']:.1f}–{r['round_max_us']:.1f}"
        rows.append(f"| {label:<60} | {r['median_us']:>10.1f} | {spread:>18} | {r['p99_us']:>9.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=2000, help="timed calls per case (default 2000)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path, default=OUT, help=f"where to write the JSON (default {OUT})")
    args = parser.parse_args(argv)
    results = measure(cases(), args.iterations, args.rounds)
    results.update(measure(compile_cases(), max(args.rounds, args.iterations // 100), args.rounds))
    results.update(measure(comparison_cases(), max(args.rounds, args.iterations // 10), args.rounds))
    report = {
        "benchmark": "validators",
        "machine": machine(),
        "results": results,
        "import_ms_after_the_app": {m: import_ms(m) for m in ("fastjsonschema", "jsonschema")},
        "schema_cache": {"size": schemas.CACHE_SIZE, "max_schema_chars": schemas.MAX_SCHEMA_CHARS},
    }
    m = report["machine"]
    print(
        f"response validators — {m['nproc']} vCPU {m['machine']} {m['cpu']}, Python {m['python']}, "
        f"{m['date']}, load average {m['loadavg_1m']}"
    )
    print(table(results))
    print("import after the app (ms, median of 5 processes):", report["import_ms_after_the_app"])
    print(json.dumps(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
