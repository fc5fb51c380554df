"""What the CLI prints for people: a routing decision (`explain`) and today's state (`status`).
The `--json` forms print the same data as JSON; these are the text forms."""

from __future__ import annotations

import json
from typing import Any


def render_decision(decision: Any, states: dict[str, dict[str, str]] | None = None) -> str:
    lines = [
        f"rule      {decision.label}",
        f"why       {decision.why}",
        f"tier      {decision.tier or '-'}",
        f"priority  {decision.priority} (from {decision.priority_source})",
    ]
    if decision.split is not None or decision.experiment is not None:  # placed by the sticky id
        lines += [f"split     {decision.split}"] if decision.split else []
        lines += [f"arm       {decision.experiment}: {decision.arm}"] if decision.experiment else []
        how = "no sticky id: placed at random" if decision.sticky == "none" else "the sticky id's source"
        lines.append(f"sticky    {decision.sticky} ({how})")
    if (cascade := decision.cascade) is not None:
        checks, stream = ", ".join(c.name for c in cascade.checks), "hold" if cascade.hold_stream else "pass"
        lines.append(f"cascade   to {cascade.to} on {checks} (stream: {stream}; from {cascade.source})")
    lines.append("chain")
    for i, route in enumerate(decision.candidates, 1):
        price = route.price
        breaker = ""
        if states is not None and route.name in states:
            state = states[route.name]
            breaker = f"  breakers: provider {state['provider']}, model {state['model']}"
        priced = f"${price.input:g} in / ${price.output:g} out"
        if route.kind == "embedding":
            priced = f"${price.input:g} in"
        where = f"{route.provider_name}/{route.model_id}"
        lines.append(f"  {i}. {route.name:<24} {where:<36} {priced} per 1M{breaker}")
    for name, reason in decision.skipped:
        lines.append(f"  -  {name:<24} skipped: {reason}")
    features = ", ".join(f"{k}={v}" for k, v in decision.features.as_dict().items())
    lines.append(f"features  {features}")
    return "\n".join(lines)


def render_status(data: dict[str, Any]) -> str:
    from tier_router.spend.results import table

    spend = data["spend"]
    lines = [
        f"day       {spend['day']} (UTC budget day)",
        f"spend     ${spend['total_usd']} over {spend['requests']} requests"
        f" ({spend['cache_hits']} cache hits)",
    ]
    results = spend.get("results") or {}
    for title, dim, money in (
        ("by tier", "tier", "by_tier"),
        ("by rule", "rule", "by_rule"),
        ("by model", "model", "by_model"),
        ("by arm", "arm", None),
        ("by key", "key", "by_key"),
    ):
        rows = results.get(dim) or {n: {"cost_usd": usd} for n, usd in spend.get(money or "", {}).items()}
        if rows:
            lines.extend(table(title, rows))
    for scope, budget in (data.get("budgets") or {}).items():
        lines.append(f"budget    {scope}: {json.dumps(budget)}")
    lines.append("breakers")
    for model, state in data["breakers"].items():
        lines.append(f"  {model:<28} provider {state['provider']:<9} model {state['model']}")
    return "\n".join(lines)


def render_regions(data: dict[str, Any]) -> str:
    """`status` on a table several regions share: each region's status, then their spend summed."""
    parts = []
    for name, region in data["regions"].items():
        parts += [f"== region {name}", render_status(region)]
    spend = data["spend"]
    parts += [
        f"== all {len(data['regions'])} regions",
        f"spend     ${spend['total_usd']} over {spend['requests']} requests"
        f" ({spend['cache_hits']} cache hits)",
    ]
    return "\n".join(parts)
