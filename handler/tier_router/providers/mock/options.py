"""The options of one mock provider, read from its URL's query (`mock://fast?flaw_rate=0.3`):
parsed once per distinct URL, and checked (`MockOptions.parse` raises ValueError naming the
option), so a typo says so instead of being ignored."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from urllib.parse import parse_qs


class Flaw(StrEnum):
    """A way the mock can answer badly, on demand (`flaws=json,refusal`)."""

    JSON = "json"
    """Invalid JSON when JSON was asked: the object cut short, or a prose preface before it."""
    TOOLS = "tools"
    """A tool call's arguments missing a required property, or one of the wrong type."""
    REFUSAL = "refusal"
    """"I'm sorry, but I can't help with that." instead of the answer."""
    TRUNCATE = "truncate"
    """The answer cut in half, finish_reason "length"."""


KNOWN = ("latency_ms", "fail_rate", "flaw_rate", "flaws", "shallow_above_tokens")
FLAW_NAMES = frozenset(f.value for f in Flaw)


@dataclass(frozen=True, slots=True)
class MockOptions:
    latency_s: float = 0.0
    fail_rate: float = 0.0
    flaw_rate: float = 0.0
    flaws: frozenset[Flaw] = frozenset(Flaw)
    shallow_above_tokens: int | None = None
    """Text answers to prompts longer than this are marked "(shallow)" (the demo's weak model:
    the mock judge scores them low)."""

    @staticmethod
    @lru_cache(maxsize=256)
    def parse(query: str) -> MockOptions:
        """From a URL query string; ValueError on an unknown option or a bad value."""
        values = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        unknown = sorted(set(values) - set(KNOWN))
        if unknown:
            raise ValueError(f"unknown mock option {unknown[0]!r} (known: {', '.join(KNOWN)})")
        latency = _number(values, "latency_ms", 0, 600_000)
        flaws = frozenset(Flaw)
        if "flaws" in values:
            names = [n.strip() for n in values["flaws"].split(",") if n.strip()]
            bad = [n for n in names if n not in FLAW_NAMES]
            if bad or not names:
                raise ValueError(
                    f"mock option flaws: {bad[0] if bad else 'empty'!r} is not one of "
                    f"{', '.join(f.value for f in Flaw)}"
                )
            flaws = frozenset(Flaw(n) for n in names)
        return MockOptions(
            latency / 1000,
            _number(values, "fail_rate", 0, 1),
            _number(values, "flaw_rate", 0, 1),
            flaws,
            int(_number(values, "shallow_above_tokens", 1, 10_000_000))
            if "shallow_above_tokens" in values
            else None,
        )


def _number(values: dict[str, str], name: str, low: float, high: float) -> float:
    if name not in values:
        return 0.0
    try:
        value = float(values[name])
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails too
        raise ValueError(f"mock option {name} must be a number from {low:g} to {high:g}")
    return value


def check_url(base_url: str) -> None:
    """Raise ValueError when a `mock://` base URL carries an unknown or invalid option (for
    a rules-file check at load)."""
    MockOptions.parse(base_url.partition("?")[2])
