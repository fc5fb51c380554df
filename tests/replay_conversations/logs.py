"""Rules and logs for the conversation replay tests: mock providers (no network), prices with a
cached-input rate so cache savings are easy to check by hand, and multi-turn conversations
whose bodies grow turn by turn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tier_router.replay import replay
from tier_router.routing.conversation import identify
from tier_router.routing.engine import Rules
from tier_router.routing.loader import load_rules

# USD per 1M tokens = micro-dollars per token.
RULES = """
version: 1
providers:
  local: {kind: mock, base_url: "mock://local"}
models:
  small: {provider: local, id: mock-small, price: {input: 0.10, cached_input: 0.01, output: 0.40}}
  medium: {provider: local, id: mock-medium, price: {input: 0.40, cached_input: 0.04, output: 1.60}}
  large: {provider: local, id: mock-large, price: {input: 3.00, cached_input: 0.30, output: 15.00}}
tiers:
  budget: [small, medium]
  standard: [medium, small]
  premium: [large, medium]
default_tier: standard
CONVERSATIONS
rules:
  - name: hard-question
    tier: premium
    STICKY_HARD
    when: {last_user_matches: {pattern: '\\b(prove|why)\\b', ignore_case: true}}
  - name: short-chat
    tier: budget
    STICKY_SHORT
    when: {message_count: {max: MAX_MESSAGES}}
"""
START = 1_796_115_600.0
"""2026-12-01 09:00 UTC."""
SYSTEM = "You are a patient tutor. " * 20


def rules_text(
    *,
    max_messages: int = 6,
    sticky_short: bool | None = None,
    sticky_hard: bool | None = None,
    conversations: str = "",
) -> str:
    def sticky(value: bool | None) -> str:
        return "" if value is None else f"sticky: {str(value).lower()}"

    return (
        RULES.replace("CONVERSATIONS", conversations)
        .replace("STICKY_HARD", sticky(sticky_hard))
        .replace("STICKY_SHORT", sticky(sticky_short))
        .replace("MAX_MESSAGES", str(max_messages))
    )


def write_rules(path: Path, **options: Any) -> Rules:
    path.write_text(rules_text(**options), encoding="utf-8")
    return load_rules(path)


def turns(opener: str, *follow_ups: str, system: str = SYSTEM) -> list[dict[str, Any]]:
    """The request bodies of one conversation, turn by turn: each repeats the earlier turns."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": opener},
    ]
    bodies = [{"model": "auto", "messages": list(messages)}]
    for text in follow_ups:
        messages += [{"role": "assistant", "content": "An answer."}, {"role": "user", "content": text}]
        bodies.append({"model": "auto", "messages": list(messages)})
    return bodies


def label(body: dict[str, Any], key: str = "") -> str:
    return identify(body, {}, key).label


def line(body: dict[str, Any], ts: float | str | None = None, **extra: Any) -> str:
    record: dict[str, Any] = {"body": body, **extra}
    if ts is not None:
        record["ts"] = ts
    return json.dumps(record)


def conversation_lines(bodies: list[dict[str, Any]], start: float, gap_s: float = 60.0) -> list[str]:
    return [line(body, start + i * gap_s) for i, body in enumerate(bodies)]


def run(tmp_path: Path, lines: list[str], rules: Rules, against: Rules | None = None) -> dict[str, Any]:
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return replay(log, rules, against=against, progress=False)


def sets(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's conversation sets by name: "rules", "against", "logged"."""
    return {s["set"]: s for s in data["conversations"]["sets"]}
