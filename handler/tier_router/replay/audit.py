"""The running totals of one replay, per tier, model and rule; results per tier, rule, model and
arm (`spend.results`); what the new rules' cascades would cost (`Cascades`); conversations
(`replay.conversations`) and the trend per day (`replay.trend`).

Memory is bounded: nothing per record is kept except the first few errors and tier changes,
so the sizes depend on the tiers, models, rules and arms, not on the number of lines — except
conversations, one small entry per conversation seen within `conversations.ttl_s`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tier_router.replay.conversations import Turns
from tier_router.replay.quality import QualityLog
from tier_router.replay.trend import Trend
from tier_router.spend.results import Results, empty_results

MAX_ERRORS_LISTED = 20

# One row of a breakdown: [requests, prompt tokens, completion tokens, routed µ$, baseline µ$]
Row = list[int]


def add_row(table: dict[str, Row], key: str, prompt: int, completion: int, routed: int, base: int) -> None:
    """Count one request in the row `key` of a breakdown."""
    row = table.get(key)
    if row is None:
        table[key] = [1, prompt, completion, routed, base]
    else:
        row[0] += 1
        row[1] += prompt
        row[2] += completion
        row[3] += routed
        row[4] += base


@dataclass
class Audit:
    """Running totals of one replay. Bounded: sizes depend on tiers/models/rules, not lines."""

    lines: int = 0
    blank: int = 0
    rerouted: int = 0
    router_lines: int = 0
    router_unserved: int = 0
    requested_unknown: int = 0
    estimated_usage: int = 0
    logged_requests: int = 0
    logged_micro: int = 0
    by_tier: dict[str, Row] = field(default_factory=dict)
    by_model: dict[str, Row] = field(default_factory=dict)
    by_rule: dict[str, Row] = field(default_factory=dict)
    results: Results = field(default_factory=empty_results)
    """Of the router's own log lines that were settled (`cost_micro_usd` logged)."""
    validated: dict[str, list[int]] = field(default_factory=dict)
    """Decided tier -> [router lines whose answer was validated, of them escalated]."""
    cascades: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    """(tier, cascade target) of the new rules -> [requests, their cost as routed (the cheap
    answer), the same tokens on the target tier's first model (the escalated answer)], µ$."""
    quality: QualityLog = field(default_factory=QualityLog)
    """The log's judgement and feedback lines (`replay.quality`): counted, never routed."""
    turns: Turns | None = None
    """Conversations: each turn as the router would place it, per rules set, and as logged."""
    trend: Trend = field(default_factory=Trend)
    """Logged tokens and cost per request, per UTC day and model."""
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    first_errors: list[tuple[int, str]] = field(default_factory=list)
    # --against
    compared: int = 0
    changed: int = 0
    rule_changed: int = 0
    old_routed_micro: int = 0
    new_routed_micro: int = 0
    transitions: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    moved: list[dict[str, Any]] = field(default_factory=list)

    def error(self, line: int, kind: str, detail: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
        if len(self.first_errors) < MAX_ERRORS_LISTED:
            self.first_errors.append((line, f"{kind}: {detail}" if detail else kind))

    def validated_line(self, tier: str, escalated: bool) -> None:
        """A logged answer on `tier` that was validated (and escalated, or not)."""
        counts = self.validated.setdefault(tier, [0, 0])
        counts[0] += 1
        counts[1] += int(escalated)

    def cascade(self, tier: str, to: str, cheap: int, escalated: int) -> None:
        """A request the new rules would validate on `tier` and escalate to `to` on failure."""
        row = self.cascades.setdefault((tier, to), [0, 0, 0])
        row[0] += 1
        row[1] += cheap
        row[2] += escalated
