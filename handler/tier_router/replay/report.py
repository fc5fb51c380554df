"""The replay report: the `--json` object, built from an `Audit` (schema `tier-router.replay/1`).

Totals, `by_tier` / `by_model` / `by_rule` breakdowns (each sorted by routed cost, dearest
first), the assumptions made, skipped lines, and with `--against` the requests that change
tier. `results`: per tier / rule / model / arm / key, what the router's own settled log lines
say happened (the rows of `/v1/router/status`, `spend.results`). `cascades`: what the new
rules' cascades would cost (`cascade_estimates`). `quality`: the log's judgements and feedback
per tier / rule / model / arm beside the replay's cost (`replay.quality`; null without any).
`conversations`: per rules set (and as logged) the conversations, turns, model switches and the
prompt cache's savings (`replay.conversations`; null without any turn). `trend`: logged tokens
and cost per request per UTC day and model (`replay.trend`; null without a timed line).
Money is in integer micro-dollars plus a decimal-dollar string (`spend.pricing.usd`).
"""

from __future__ import annotations

from typing import Any

from tier_router.replay.audit import Audit, Row
from tier_router.replay.pricing import DEFAULT_COMPLETION_TOKENS
from tier_router.spend.pricing import usd
from tier_router.spend.results import rows as result_rows

SCHEMA = "tier-router.replay/1"


def ratio(part: int, whole: int) -> float:
    """part / whole, rounded to 6 decimals; 0.0 when whole is 0."""
    return round(part / whole, 6) if whole else 0.0


def _rows(table: dict[str, Row], requests: int, routed_total: int) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (n, prompt, completion, routed, base) in sorted(
        table.items(), key=lambda kv: (-kv[1][3], kv[0])
    ):
        out[name] = {
            "requests": n,
            "share": ratio(n, requests),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "routed_micro_usd": routed,
            "routed_usd": usd(routed),
            "cost_share": ratio(routed, routed_total),
            "baseline_micro_usd": base,
            "baseline_usd": usd(base),
        }
    return out


def report(
    audit: Audit,
    *,
    log: str,
    rules: str,
    against: str | None,
    baseline: str,
    elapsed: float | None = None,
) -> dict[str, Any]:
    rows = audit.by_tier.values()
    requests = sum(r[0] for r in rows)
    routed = sum(r[3] for r in rows)
    base = sum(r[4] for r in rows)
    saved = base - routed
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "log": log,
        "rules": rules,
        "against": against,
        "baseline_model": baseline,
        "lines": {
            "total": audit.lines,
            "blank": audit.blank,
            "rerouted": audit.rerouted,
            "router_log": audit.router_lines,
            "router_log_unserved": audit.router_unserved,
            "quality": audit.quality.lines,
            "skipped": audit.errors,
        },
        "assumptions": {
            "requested_model_unknown_routed_as_auto": audit.requested_unknown,
            "usage_estimated": audit.estimated_usage,
            "default_completion_tokens": DEFAULT_COMPLETION_TOKENS,
        },
        "totals": {
            "requests": requests,
            "prompt_tokens": sum(r[1] for r in rows),
            "completion_tokens": sum(r[2] for r in rows),
            "routed_micro_usd": routed,
            "routed_usd": usd(routed),
            "baseline_micro_usd": base,
            "baseline_usd": usd(base),
            "saved_micro_usd": saved,
            "saved_usd": usd(saved) if saved >= 0 else "-" + usd(-saved),
            "savings_ratio": ratio(saved, base),
            "logged_requests": audit.logged_requests,
            "logged_micro_usd": audit.logged_micro,
            "logged_usd": usd(audit.logged_micro),
        },
        "by_tier": _rows(audit.by_tier, requests, routed),
        "by_model": _rows(audit.by_model, requests, routed),
        "by_rule": _rows(audit.by_rule, requests, routed),
        "results": result_rows(audit.results),
        "cascades": cascade_estimates(audit),
        "quality": None,
        "changes": None,
        "errors": {
            "count": audit.errors,
            "by_kind": dict(sorted(audit.error_kinds.items())),
            "first": [{"line": line, "reason": reason} for line, reason in audit.first_errors],
        },
    }
    data["quality"] = audit.quality.section({"tier": data["by_tier"], "rule": data["by_rule"]})
    data["conversations"] = audit.turns.section(rules, against) if audit.turns is not None else None
    data["trend"] = audit.trend.section()
    if against is not None:
        transitions = [
            {
                "from": old,
                "to": new,
                "requests": n,
                "old_micro_usd": old_cost,
                "new_micro_usd": new_cost,
                "delta_micro_usd": new_cost - old_cost,
            }
            for (old, new), (n, old_cost, new_cost) in sorted(
                audit.transitions.items(), key=lambda kv: (-kv[1][0], kv[0])
            )
        ]
        data["changes"] = {
            "compared": audit.compared,
            "changed_tier": audit.changed,
            "changed_rule_same_tier": audit.rule_changed,
            "old_routed_micro_usd": audit.old_routed_micro,
            "new_routed_micro_usd": audit.new_routed_micro,
            "delta_micro_usd": audit.new_routed_micro - audit.old_routed_micro,
            "transitions": transitions,
            "requests": audit.moved,
            "requests_listed": len(audit.moved),
        }
    if elapsed is not None:
        data["timing"] = {
            "seconds": round(elapsed, 3),
            "lines_per_s": round(audit.lines / elapsed) if elapsed > 0 else None,
        }
    return data


def cascade_estimates(audit: Audit) -> list[dict[str, Any]]:
    """Per (tier, target) of the new rules' cascades, dearest first: the requests they would
    validate, their cheap answers' cost, the escalated answers' (the same tokens on the
    target's first model), and

        estimated = cheap + rate × escalated      (rounded to the nearest µ$)

    with `rate` the tier's escalation rate measured on the log's validated router lines (those
    with `cascade` set, decided on the tier; escalated: `escalated_from` is the tier) — by
    whatever validators were configured then. Without a validated line for the tier the rate
    is unmeasured: `estimated_micro_usd` is null, and `range_micro_usd` is
    [cheap (no escalation), cheap + escalated (always escalated)]. One hop: the target tier's
    own cascade is not followed."""
    out = []
    for (tier, to), (n, cheap, escalated) in sorted(
        audit.cascades.items(), key=lambda kv: (-kv[1][1] - kv[1][2], kv[0])
    ):
        validated, failed = audit.validated.get(tier, (0, 0))
        estimated = cheap + (escalated * failed + validated // 2) // validated if validated else None
        out.append(
            {
                "tier": tier,
                "to": to,
                "requests": n,
                "cheap_micro_usd": cheap,
                "escalated_answer_micro_usd": escalated,
                "escalation_rate": ratio(failed, validated) if validated else None,
                "rate_measured_on": validated,
                "rate_measured": validated > 0,
                "estimated_micro_usd": estimated,
                "estimated_usd": None if estimated is None else usd(estimated),
                "range_micro_usd": [cheap, cheap + escalated],
            }
        )
    return out
