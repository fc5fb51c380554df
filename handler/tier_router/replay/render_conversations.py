"""The report's conversations (`replay.conversations`) and trend (`replay.trend`) for people:
plain text lines and HTML sections, used by `replay.render`. Conversations are shown by their
label only (a digest: never prompt text); every name from the log is escaped in HTML."""

from __future__ import annotations

import html
from typing import Any

from tier_router.spend.pricing import usd

SET_NAMES = {"rules": "these rules", "against": "against", "logged": "as logged"}
MOST_SHOWN = 3
"""Conversations with most switches shown per set in the text (the JSON lists more)."""


def _set_name(s: dict[str, Any]) -> str:
    return SET_NAMES.get(s["set"], s["set"])


def _percent(change: float | None) -> str:
    return "-" if change is None else f"{change:+.1%}"


def _per_request(micro: float | None) -> str:
    """A cost per request in dollars, 6 decimals ("-": unknown)."""
    return "-" if micro is None else f"{micro / 1e6:.6f}"


def conversations_text(section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    head = (
        f"{'conversations':<20} {'convs':>7} {'multi':>7} {'turns':>8} {'switches':>9} {'per multi':>9}"
        f" {'max':>5} {'cached tok':>12} {'cost $':>11} {'saved $':>10}"
    )
    out = [
        "",
        "conversations: each turn placed as the router would (sticky, no failure simulated); a turn",
        f"on its previous turn's model within {section['cache_ttl_s']:g} s reads that turn's prompt from"
        " the cache",
        head,
        "-" * len(head),
    ]
    for s in section["sets"]:
        cache = s["cache"]
        out.append(
            f"{_set_name(s):<20} {s['conversations']:>7,} {s['multi_turn']:>7,} {s['turns']:>8,}"
            f" {s['switches']:>9,} {s['switches_per_multi_turn']:>9.2f} {s['max_switches']:>5,}"
            f" {cache['cached_tokens']:>12,} {usd(cache['with_cache_micro_usd'], 4):>11}"
            f" {usd(cache['saved_micro_usd'], 4):>10}"
        )
    if any(s["most_switches"] for s in section["sets"]):
        out.append("  most switches (label switches/turns)")
    for s in section["sets"]:
        if s["most_switches"]:
            shown = ", ".join(
                f"{m['conversation']} {m['switches']}/{m['turns']}" for m in s["most_switches"][:MOST_SHOWN]
            )
            out.append(f"    {_set_name(s)}: {shown}")
    untimed = max(s["untimed_turns"] for s in section["sets"])
    if untimed:
        out.append(f"  {untimed:,} turns had no ts: each taken as at the line before it")
    if section["unidentified"]:
        out.append(f"  {section['unidentified']:,} requests had a malformed conversation id: not counted")
    return out


def trend_text(trend: dict[str, Any] | None) -> list[str]:
    if not trend:
        return []
    head = f"{'day (UTC)':<11} {'model':<28} {'requests':>9} {'in tok/req':>11} {'out tok/req':>12}"
    head += f" {'$/request':>11}"
    out = ["", "trend per day (as logged)", head, "-" * len(head)]
    for row in trend["days"]:
        cost = row["cost_micro_usd_per_request"]
        out.append(
            f"{row['day']:<11} {row['model'][:28]:<28} {row['requests']:>9,}"
            f" {row['prompt_tokens_per_request']:>11,.1f} {row['completion_tokens_per_request']:>12,.1f}"
            f" {_per_request(cost):>11}"
        )
    for model, change in trend["changes"].items():
        out.append(
            f"  {model} {change['from']} -> {change['to']}:"
            f" out tok/req {_percent(change['completion_tokens_per_request'])},"
            f" in tok/req {_percent(change['prompt_tokens_per_request'])},"
            f" $/request {_percent(change['cost_per_request'])}"
        )
    if trend["untimed"]:
        out.append(f"  {trend['untimed']:,} lines with logged usage had no ts: not in the trend")
    return out


def conversations_html(section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    esc = html.escape
    head = "".join(
        f"<th>{c}</th>"
        for c in (
            "set",
            "conversations",
            "multi-turn",
            "turns",
            "switches",
            "per multi-turn",
            "max",
            "cached tokens",
            "cost $ (cached)",
            "cost $ (no cache)",
            "saved $",
            "most switches",
        )
    )
    rows = []
    for s in section["sets"]:
        cache = s["cache"]
        most = ", ".join(f"{m['conversation']} ({m['switches']}/{m['turns']})" for m in s["most_switches"])
        cells = (
            f"{s['conversations']:,}",
            f"{s['multi_turn']:,}",
            f"{s['turns']:,}",
            f"{s['switches']:,}",
            f"{s['switches_per_multi_turn']:.2f}",
            f"{s['max_switches']:,}",
            f"{cache['cached_tokens']:,}",
            usd(cache["with_cache_micro_usd"]),
            usd(cache["without_cache_micro_usd"]),
            cache["saved_usd"],
            most or "-",
        )
        tds = "".join(f"<td>{esc(c)}</td>" for c in cells)
        rows.append(f"<tr><td>{esc(_set_name(s))}: {esc(s['source'])}</td>{tds}</tr>")
    return [
        "<h2>Conversations</h2><p>Each turn placed as the router would place it (sticky, no failure"
        f" simulated); a turn on its previous turn's model within {section['cache_ttl_s']:g} s reads that"
        " turn's prompt from the cache. Conversations by label only.</p>"
        f"<table><tr>{head}</tr>{''.join(rows)}</table>"
    ]


def trend_html(trend: dict[str, Any] | None) -> list[str]:
    if not trend:
        return []
    esc = html.escape
    head = "".join(
        f"<th>{c}</th>"
        for c in (
            "day (UTC)",
            "model",
            "requests",
            "input tokens/request",
            "output tokens/request",
            "$/request",
        )
    )
    rows = "".join(
        f"<tr><td>{esc(r['day'])}</td><td>{esc(r['model'])}</td><td>{r['requests']:,}</td>"
        f"<td>{r['prompt_tokens_per_request']:,.1f}</td><td>{r['completion_tokens_per_request']:,.1f}</td>"
        f"<td>{_per_request(r['cost_micro_usd_per_request'])}</td></tr>"
        for r in trend["days"]
    )
    changes = "".join(
        f"<li>{esc(model)}: output tokens/request {_percent(c['completion_tokens_per_request'])}, input"
        f" {_percent(c['prompt_tokens_per_request'])}, cost/request {_percent(c['cost_per_request'])}"
        f" from {esc(c['from'])} to {esc(c['to'])}</li>"
        for model, c in trend["changes"].items()
    )
    return [
        f"<h2>Trend per day (as logged)</h2><table><tr>{head}</tr>{rows}</table>"
        + (f"<ul>{changes}</ul>" if changes else "")
    ]
