"""Generate rules/samples/requests.jsonl: a deterministic, realistic request log for `tier-router replay`.

    .venv/bin/python scripts/make_sample_log.py [--lines 2000] [--seed 8] [--out rules/samples/requests.jsonl]

The story: an application that sent every request to `gpt-4.1` (a premium model) before it
put the router in front. Its log holds OpenAI chat request bodies, most wrapped with what
came back (`{"custom_id", "request", "response": {"model", "usage"}}`), some bare bodies
without usage, and a few of the router's own access-log lines (no prompt text, priced as
logged). The mix: short chat, summaries and translations, code, reasoning questions, tool
calls and JSON output, and long-context documents. Same seed, same file, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "rules" / "samples" / "requests.jsonl"

SHORT = [
    "hi! what can you help me with?",
    "What's a good name for a grey cat?",
    "thanks, that worked",
    "Can you suggest three dinner ideas with lentils?",
    "How many days until the end of the month?",
    "What does 'ephemeral' mean?",
    "Give me a motivational quote for Monday.",
    "Is it going to be cold in Oslo in March?",
]
DOC = (
    "The quarterly report shows revenue growth in the northern region, driven by new retail "
    "partners and a stronger holiday season. Operating costs rose slightly because of logistics "
    "contracts renegotiated in the second month. The board approved the hiring plan for the "
    "support team and asked for a review of the warehouse lease before the end of the year. "
)
TRANSFORM = [
    "Summarize this in three bullet points:\n\n{doc}",
    "tl;dr please:\n\n{doc}",
    "Translate to French:\n\n{doc}",
    "Extract every date and amount mentioned:\n\n{doc}",
    "Classify the sentiment of this text as positive, neutral or negative:\n\n{doc}",
]
CODE = [
    "Why does this raise a KeyError?\n```python\nconfig = {}\nprint(config['port'])\n```",
    "Refactor this function to avoid the nested loops:\n```python\n{snippet}\n```",
    "Write unit tests for a function that parses ISO dates.",
    "Here is a stack trace from our worker, what is the root of it?\n{trace}",
    "Write a SQL query that returns the top 5 customers by revenue per month.",
]
SNIPPET = (
    "def pairs(xs):\n    out = []\n    for a in xs:\n        for b in xs:\n"
    "            if a < b:\n                out.append((a, b))\n    return out\n"
)
TRACE = (
    'Traceback (most recent call last):\n  File "worker.py", line 42, in run\n'
    "    job = queue.pop()\nIndexError: pop from empty list\n"
)
HARD = [
    "Prove that the square root of 2 is irrational.",
    "What are the trade-offs between event sourcing and a relational model for our billing system?",
    "Walk me through a threat model for a public file upload endpoint.",
    "Derive the closed form of the sum of the first n squares, step by step.",
]
CHATTY = (
    "I have been thinking about how to plan the garden this year. Last season the tomatoes did "
    "well but the beans struggled, maybe because of the shade from the fence. "
)
SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise assistant for an online bookshop. Answer in two sentences or fewer.",
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look up an order by id",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]
KINDS = [  # (kind, weight, completion tokens range)
    ("short", 38, (20, 180)),
    ("chatty", 12, (150, 500)),
    ("transform", 20, (80, 400)),
    ("code", 15, (250, 1200)),
    ("hard", 5, (600, 2000)),
    ("tools", 6, (20, 120)),
    ("long", 4, (300, 900)),
]


def estimate(text: str) -> int:
    return (len(text) + 3) // 4 + 4


def messages_for(kind: str, rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    system = {"role": "system", "content": rng.choice(SYSTEMS)}
    extra: dict[str, Any] = {}
    if kind == "short":
        return [system, {"role": "user", "content": rng.choice(SHORT)}], extra
    if kind == "chatty":
        turns = [system]
        for _ in range(rng.randint(1, 3)):
            turns.append({"role": "user", "content": CHATTY * rng.randint(1, 3)})
            turns.append({"role": "assistant", "content": "That makes sense. " * rng.randint(5, 20)})
        turns.append({"role": "user", "content": CHATTY * rng.randint(2, 4) + "What would you plant?"})
        return turns, extra
    if kind == "transform":
        doc = DOC * rng.randint(1, 6)
        return [system, {"role": "user", "content": rng.choice(TRANSFORM).format(doc=doc)}], extra
    if kind == "code":
        prompt = rng.choice(CODE).replace("{snippet}", SNIPPET).replace("{trace}", TRACE)
        return [system, {"role": "user", "content": prompt}], extra
    if kind == "hard":
        return [system, {"role": "user", "content": rng.choice(HARD)}], {"max_tokens": 4000}
    if kind == "tools":
        if rng.random() < 0.5:
            extra = {"tools": TOOLS}
            user = "Where is my order A-1042?"
        else:
            extra = {"response_format": {"type": "json_object"}}
            user = "Return the title and author of the book I just mentioned as JSON."
        return [system, {"role": "user", "content": user}], extra
    # long: a pasted document (0.8-2.3K tokens), asked about at the end
    doc = DOC * rng.randint(8, 24)
    return [system, {"role": "user", "content": doc + "\n\nWhat should the board worry about?"}], extra


def router_line(rng: random.Random, i: int) -> dict[str, Any]:
    """A line as `tier-router serve` logs it: no prompt text; one of them a 70K-token request."""
    long = i % 40 == 0
    tier, rule, model, price = (
        ("premium", "long-context", "claude-sonnet-4.5", (3.0, 15.0))
        if long
        else ("budget", "short-chat", "deepseek-chat", (0.28, 0.42))
    )
    prompt = 70_000 + rng.randint(0, 9000) if long else rng.randint(30, 200)
    completion = rng.randint(100, 800)
    cost = -(-round(prompt * price[0] * 1000 + completion * price[1] * 1000) // 1000)
    return {
        "event": "request",
        "request_id": f"rtr-{i:05d}",
        "outcome": "ok",
        "status": 200,
        "tier": tier,
        "rule": rule,
        "priority": "normal",
        "model": model,
        "provider": "anthropic" if long else "deepseek",
        "cost_micro_usd": cost,
        "features": {"conversation_tokens": prompt, "message_count": 2, "max_tokens": None},
        "prompt_tokens": prompt,
        "completion_tokens": completion,
    }


def generate(lines: int, seed: int) -> list[str]:
    rng = random.Random(seed)  # noqa: S311 - a reproducible sample, not a secret
    kinds = [k for k, _, _ in KINDS]
    weights = [w for _, w, _ in KINDS]
    spans = {k: span for k, _, span in KINDS}
    out = []
    for i in range(1, lines + 1):
        if rng.random() < 0.04:
            out.append(json.dumps(router_line(rng, i), separators=(",", ":")))
            continue
        kind = rng.choices(kinds, weights)[0]
        messages, extra = messages_for(kind, rng)
        body = {"model": "gpt-4.1" if rng.random() < 0.85 else "auto", "messages": messages, **extra}
        if rng.random() < 0.25:  # a bare body, no usage: tokens are estimated
            record: dict[str, Any] = body
        else:
            prompt = sum(estimate(m["content"]) for m in messages)
            prompt = round(prompt * rng.uniform(0.9, 1.15))
            completion = rng.randint(*spans[kind])
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            record = {
                "custom_id": f"req-{i:05d}",
                "request": body,
                "response": {"model": body["model"], "usage": usage},
            }
        out.append(json.dumps(record, separators=(",", ":")))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(generate(args.lines, args.seed)) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.lines} lines ({len(text.encode()) / 1e6:.2f} MB) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
