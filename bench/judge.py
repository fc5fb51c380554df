"""The judge path's cost per sampled request, in tokens (and micro-dollars at list prices).

    .venv/bin/python bench/judge.py [--answer-tokens 300] [--json FILE]

One whole judgement (`quality.runner.Judging.run`: the budget reservation, the reference
tier's answer, the judge in both orders, the count, the line) per request size, in this
process, on a scripted in-process provider (an httpx transport): the reference answers with
`--answer-tokens` tokens of text, the judge with a JSON verdict; prompt tokens are counted
as the mock provider counts them (`providers.mock.answers.prompt_tokens`, ~4 characters per
token). The served answer is as long as the reference's.

Reports, per request size (the conversation's tokens): the reference call's prompt and
completion tokens, the judge's (both orders summed), the total, what the calls cost at the
prices below (reference: Claude Sonnet 4.5, $3 / $15 per 1M tokens; judge: GPT-4.1, $2 / $8),
and the worst case the judging's budget reserved before starting. Writes the figures as
JSON to bench/out/judge.json (or --json FILE).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "handler"))

from tier_router.gateway import Gateway  # noqa: E402
from tier_router.provider_keys import KeySource  # noqa: E402
from tier_router.providers.mock.answers import prompt_tokens  # noqa: E402
from tier_router.quality.sample import Sample  # noqa: E402
from tier_router.routing.loader import parse_rules  # noqa: E402
from tier_router.routing.tokens import estimate_tokens  # noqa: E402
from tier_router.settings import Settings  # noqa: E402
from tier_router.store.memory import MemoryStore  # noqa: E402
from tier_router.telemetry import AccessLog  # noqa: E402

OUT = ROOT / "bench" / "out" / "judge.json"
SIZES = (50, 500, 2_000, 8_000, 30_000)
"""Conversation sizes, in (estimated) tokens: the last user message and three earlier turns."""
VERDICT = json.dumps({"a": 8, "b": 7, "better": "A", "reason": "Both are right; A is more complete."})
PRICES = {
    "served": {"input": 0.40, "output": 1.60},
    "reference": {"input": 3.00, "output": 15.00},
    "judge": {"input": 2.00, "output": 8.00},
}


class Scripted(httpx.AsyncBaseTransport):
    """The reference answers `answer_chars` of text; the judge, a JSON verdict."""

    def __init__(self, answer_chars: int) -> None:
        self.answer = ("The answer, explained step by step. " * (answer_chars // 36 + 1))[:answer_chars]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(await request.aread())
        text = VERDICT if body["model"] == "judge-1" else self.answer
        prompt, completion = prompt_tokens(body, body["messages"]), estimate_tokens(text)
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
        )


def rules() -> dict[str, Any]:
    return {
        "version": 1,
        "providers": {"bench": {"kind": "openai", "base_url": "http://bench/v1", "api_key_env": "BENCH_KEY"}},
        "models": {name: {"provider": "bench", "id": f"{name}-1", "price": p} for name, p in PRICES.items()},
        "tiers": {"budget": ["served"], "premium": ["reference"]},
        "default_tier": "budget",
        "quality": {"sample": 1, "reference": "premium", "judge": {"model": "judge"}, "budget_usd": 1000},
    }


def conversation(tokens: int) -> dict[str, Any]:
    """A body of about `tokens` estimated tokens: three earlier turns and the last question."""
    question = "Given all that, what should we do next, and why? Be specific."
    turn = "Some earlier context about the project and what was said before. "
    chars = max(tokens * 4 - len(question) - 24, 0) // 3  # each message adds ~8 tokens
    earlier = (turn * (chars // len(turn) + 1))[:chars]
    messages = [
        {"role": "user", "content": earlier},
        {"role": "assistant", "content": earlier},
        {"role": "user", "content": earlier},
        {"role": "user", "content": question},
    ]
    return {"model": "auto", "messages": [m for m in messages if m["content"]]}


async def measure(answer_tokens: int) -> list[dict[str, Any]]:
    answer_chars = answer_tokens * 4
    client = httpx.AsyncClient(transport=Scripted(answer_chars))
    gateway = Gateway(
        Settings(rules_path=Path("bench-rules.yaml")),
        rules=parse_rules(rules(), "bench-rules.yaml"),
        client=client,
        keys=KeySource({"BENCH_KEY": "bench-key-not-secret"}),
        store=MemoryStore(),
    )
    judging = gateway.quality.judging
    assert judging is not None
    out = io.StringIO()
    judging.access_log = AccessLog(out)
    reserved: list[int] = []
    reserve = judging.guard.reserve

    async def recording(key: str | None, worst: int, **options: Any) -> Any:
        reserved.append(worst)
        return await reserve(key, worst, **options)

    judging.guard.reserve = recording  # type: ignore[method-assign]
    rows = []
    for i, size in enumerate(SIZES):
        body = conversation(size)
        sample = Sample(f"bench-{i}", body, Scripted(answer_chars).answer, "budget", "premium", cost=0)
        await judging.run(sample)
        line = json.loads(out.getvalue().splitlines()[-1])
        if line["error"] or line["skipped"]:
            raise SystemExit(f"the judgement failed: {line['error'] or line['skipped']}")
        ref, jud = line["tokens"]["reference"], line["tokens"]["judge"]
        cost = line["cost_micro_usd"]
        rows.append(
            {
                "conversation_tokens": prompt_tokens(body, body["messages"]),
                "answer_tokens": answer_tokens,
                "reference_prompt": ref["prompt_tokens"],
                "reference_completion": ref["completion_tokens"],
                "judge_prompt": jud["prompt_tokens"],
                "judge_completion": jud["completion_tokens"],
                "total_tokens": ref["total_tokens"] + jud["total_tokens"],
                "cost_micro_usd": cost["reference"] + cost["judge"],
                "reserved_micro_usd": reserved[-1],
            }
        )
    await client.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answer-tokens", type=int, default=300)
    parser.add_argument("--json", type=Path, default=OUT)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.answer_tokens))
    head = (
        f"{'conversation':>12} {'ref prompt':>10} {'ref compl':>9} {'judge prompt':>12} "
        f"{'judge compl':>11} {'total':>7} {'cost $':>9} {'reserved $':>10}"
    )
    print(f"The judge path per sampled request (answers of {args.answer_tokens} tokens; judge asked twice)")
    print(head)
    for r in rows:
        print(
            f"{r['conversation_tokens']:>12} {r['reference_prompt']:>10} {r['reference_completion']:>9} "
            f"{r['judge_prompt']:>12} {r['judge_completion']:>11} {r['total_tokens']:>7} "
            f"{r['cost_micro_usd'] / 1e6:>9.5f} {r['reserved_micro_usd'] / 1e6:>10.4f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"answer_tokens": args.answer_tokens, "rows": rows}, indent=2) + "\n")
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
