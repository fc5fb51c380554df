"""Conversation identity (`tier_router.routing.conversation.identify`, issue 19): its cost per request.

    .venv/bin/python bench/conversation_id.py [--iterations N] [--json]

Bodies, as the OpenAI SDK sends them:
- small: a system prompt, one user message (the first turn);
- tool history 40 KB: a system prompt, 3 tools, then 40 KB of tool calls / results (turn ~60);
- system 1 MB: a 1 MB system prompt (hashed up to the cap, once);
- explicit header: the small body with `x-conversation-id` (no prefix hashed).
For comparison, `json.dumps(body)` of the same body (what re-serialising it would cost) is
timed too. Prints µs per call (p50/p99/mean) as a table, or JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "handler")]

from tier_router.routing.conversation import identify  # noqa: E402

from bench.bench_params import measure  # noqa: E402

SYSTEM = "You are a helpful assistant for ACME's billing team. Answer briefly and cite invoices."
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look an invoice up",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    },
}


def small() -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Where is invoice 42?"}]
    return {"model": "auto", "messages": messages, "user": "u-123"}


def tool_history(size: int = 40_000) -> dict[str, Any]:
    body = small()
    body["tools"] = [{**TOOL, "function": {**TOOL["function"], "name": f"lookup_{k}"}} for k in range(3)]
    messages = body["messages"]
    k = 0
    while len(json.dumps(messages)) < size:
        function = {"name": "lookup_0", "arguments": json.dumps({"q": f"invoice {k}"})}
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": f"c{k}", "type": "function", "function": function}],
            }
        )
        messages.append(
            {"role": "tool", "tool_call_id": f"c{k}", "content": "line item, amount, date; " * 20}
        )
        messages.append({"role": "user", "content": f"and invoice {k + 1}?"})
        k += 1
    return body


def huge_system() -> dict[str, Any]:
    body = small()
    body["messages"][0]["content"] = "policy text " * ((1 << 20) // 12)
    return body


def run(iterations: int) -> dict[str, Any]:
    cases = {
        "small": (small(), {}),
        "tool_history_40KB": (tool_history(), {}),
        "system_1MB": (huge_system(), {}),
        "explicit_header": (small(), {"x-conversation-id": "conv-123"}),
    }
    report: dict[str, Any] = {}
    for name, (body, headers) in cases.items():
        n = iterations if len(json.dumps(body)) < 100_000 else max(iterations // 50, 200)
        report[name] = {
            "bytes": len(json.dumps(body)),
            "messages": len(body["messages"]),
            "source": identify(body, headers).source,
            "identify": measure(lambda b=body, h=headers: identify(b, h, "tenant"), n, warmup=500),
            "json.dumps(body), for scale": measure(lambda b=body: json.dumps(b), n, warmup=500),
        }
    return report


def table(report: dict[str, Any]) -> str:
    head = (
        f"{'case':<20} {'bytes':>9} {'msgs':>5} {'source':<8} {'p50 µs':>8} {'p99 µs':>8} {'dumps p50':>10}"
    )
    rows = [head, "-" * len(head)]
    for name, r in report.items():
        i, d = r["identify"], r["json.dumps(body), for scale"]
        rows.append(
            f"{name:<20} {r['bytes']:>9} {r['messages']:>5} {r['source']:<8} "
            f"{i['p50_us']:>8} {i['p99_us']:>8} {d['p50_us']:>10}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()
    report = run(args.iterations)
    print(json.dumps(report, indent=2) if args.json else table(report))


if __name__ == "__main__":
    main()
