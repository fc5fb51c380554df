"""The OpenAI parameter check (`tier_router.params.check`, issue 13): its cost per request.

    .venv/bin/python bench/bench_params.py [--iterations N]

Two bodies, as the OpenAI SDK sends them: a typical one (10 messages, system + user/assistant
turns, sampling parameters, `stream_options`) and a big one (200 messages: a tool-calling
conversation with tool results, an image part, 3 tools, `response_format` json_schema).
For each: `params.check` alone; what `endpoints.decide` validated before issue 13 (`parse_chat`
with its direct checks) and does now (`params.check`, then `parse_chat` skipping the direct
checks it implies); the difference is the added cost. Prints µs per call (p50/p99/mean), JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from tier_router.params import check
from tier_router.routing.request import parse_chat

TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a thing up",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    },
}


def typical() -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
    for turn in range(9):
        role = "user" if turn % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"Turn {turn}: " + "some ordinary words " * 20})
    return {
        "model": "auto",
        "messages": messages,
        "temperature": 0.7,
        "max_tokens": 512,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-123",
    }


def big() -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Use the tools."}]
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "https://example.org/a.png", "detail": "low"}},
            ],
        }
    )
    for k in range(66):
        function = {"name": "lookup", "arguments": '{"q":"x"}'}
        call = {"id": f"call_{k}", "type": "function", "function": function}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"call_{k}", "content": "result " * 30})
        messages.append({"role": "user", "content": "and then?"})
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    return {
        "model": "auto",
        "messages": messages[:200],
        "tools": [TOOL] * 3,
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        "max_completion_tokens": 1000,
        "temperature": 0,
        "metadata": {"team": "search"},
    }


def measure(fn: Callable[[], Any], iterations: int, *, warmup: int = 2000) -> dict[str, float]:
    """µs per call of `fn` (p50, p99, mean) over `iterations` calls, after up to `warmup`."""
    for _ in range(min(iterations, warmup)):
        fn()
    clock = time.perf_counter_ns
    samples = []
    for _ in range(iterations):
        start = clock()
        fn()
        samples.append(clock() - start)
    samples.sort()
    return {
        "p50_us": round(samples[len(samples) // 2] / 1000, 2),
        "p99_us": round(samples[int(len(samples) * 0.99)] / 1000, 2),
        "mean_us": round(statistics.fmean(samples) / 1000, 2),
    }


def run(iterations: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name, body in (("typical_10_messages", typical()), ("big_200_messages_tool_calls", big())):
        check(body)  # valid: must not raise
        before = measure(lambda b=body: parse_chat(b, text_checked=True), iterations)
        after = measure(
            lambda b=body: (check(b), parse_chat(b, text_checked=True, params_checked=True)), iterations
        )
        report[name] = {
            "bytes": len(json.dumps(body)),
            "params.check": measure(lambda b=body: check(b), iterations),
            "before: parse_chat": before,
            "after: check + parse_chat(params_checked)": after,
            "added_p50_us": round(after["p50_us"] - before["p50_us"], 2),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    print(json.dumps(run(parser.parse_args().iterations), indent=2))


if __name__ == "__main__":
    main()
