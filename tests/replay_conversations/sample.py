"""The sample log docs/replay.md replays: rules/samples/conversations.jsonl, written by

    python -m tests.replay_conversations.sample > rules/samples/conversations.jsonl

(tests/replay_conversations/test_docs.py checks the shipped file is this output, byte for byte).

Three days (2026-12-01..03), three five-turn conversations a day, each turn a wrapped request
body that grows by the earlier turns, with what an application logged before sticky routing:
`ts`, `model_used` and `usage`. Under rules/router.yaml each turn's last user message is short,
so `short-chat` (at most 6 messages) sends the first three turns to `budget` and the default
sends the fourth and fifth to `standard`; one conversation a day opens with an architecture
question (`hard-reasoning`: premium). The logged models are those the rules picked turn by turn
(no stickiness), and `gpt-4.1-mini`'s answers grow longer day by day (token inflation).
"""

from __future__ import annotations

import json

DAY_S = 86_400
START = 1_796_115_600  # 2026-12-01 09:00 UTC
SYSTEM = (
    "You are the support assistant of a small online bookshop. Answer in two or three sentences, "
    "politely, and never promise delivery dates. "
) * 12
OPENERS = (
    ("Hello, where is my order {n}?", "budget"),
    ("Can I change the address on order {n}?", "budget"),
    ("Why is the architecture of your shop app (ticket {n}) built on microservices?", "premium"),
)
FOLLOW_UPS = ("Thanks. And the invoice?", "Can you resend it?", "One more thing, please.", "Great, bye.")
ANSWER = "Certainly: I have looked into it and will update you here."
MODELS = {"budget": "deepseek-chat", "standard": "gpt-4.1-mini", "premium": "claude-sonnet-4.5"}
COMPLETION = {
    "deepseek-chat": (60, 60, 60),
    "gpt-4.1-mini": (120, 150, 190),
    "claude-sonnet-4.5": (200, 200, 200),
}
GAP_S = (60, 60, 600, 60)
"""Seconds before turns 2..5: the third conversation's turn 4 comes 10 minutes later (cold)."""


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


def lines() -> list[str]:
    out = []
    for day in range(3):
        for number, (opener, first_tier) in enumerate(OPENERS):
            first = opener.format(n=1042 + 10 * day + number)
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": first}]
            at = START + day * DAY_S + number * 3600
            for turn in range(5):
                if turn:
                    at += GAP_S[turn - 1] if number == 2 else 60
                    messages += [
                        {"role": "assistant", "content": ANSWER},
                        {"role": "user", "content": FOLLOW_UPS[turn - 1]},
                    ]
                tier = first_tier if turn == 0 else "budget" if len(messages) <= 6 else "standard"
                model = MODELS[tier]
                prompt = sum(tokens(m["content"]) + 4 for m in messages)
                record = {
                    "custom_id": f"d{day + 1}-c{number + 1}-t{turn + 1}",
                    "ts": at,
                    "body": {"model": "auto", "messages": list(messages)},
                    "model_used": model,
                    "usage": {"prompt_tokens": prompt, "completion_tokens": COMPLETION[model][day]},
                }
                out.append(json.dumps(record, separators=(",", ":")))
    return out


if __name__ == "__main__":
    print("\n".join(lines()))
