"""The replay report for people: plain text (the CLI's output) and a self-contained HTML page.

Both render the `--json` object (`report.report`); the HTML draws its charts as inline SVG
(no scripts, no external resources) and escapes every name taken from the log or rules.
"""

from __future__ import annotations

import html
from typing import Any

from tier_router.quality.report import table as quality_table
from tier_router.replay.render_conversations import (
    conversations_html,
    conversations_text,
    trend_html,
    trend_text,
)
from tier_router.replay.report import ratio
from tier_router.spend.pricing import usd
from tier_router.spend.results import table


def _signed_usd(micro: int) -> str:
    return ("+$" if micro >= 0 else "-$") + usd(abs(micro), 4)


def _table(title: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    head = f"{title:<28} {'requests':>9} {'share':>6} {'prompt tok':>12} {'compl tok':>11}"
    head += f" {'routed $':>11} {'baseline $':>11} {'saved':>6}"
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        saved = ratio(r["baseline_micro_usd"] - r["routed_micro_usd"], r["baseline_micro_usd"])
        lines.append(
            f"{name[:28]:<28} {r['requests']:>9,} {r['share']:>6.1%} {r['prompt_tokens']:>12,}"
            f" {r['completion_tokens']:>11,} {usd(r['routed_micro_usd'], 4):>11}"
            f" {usd(r['baseline_micro_usd'], 4):>11} {saved:>6.1%}"
        )
    return lines


def _results(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The router log lines' results per tier, rule, model and arm (as `tier-router status`)."""
    out: list[str] = []
    for dim in ("tier", "rule", "model", "arm"):
        if results.get(dim):
            out += ["", *table(f"results by {dim} (logged)", results[dim])]
    return out


QUALITY_DIMS = ("tier", "rule", "arm")
ROUTED = ("routed $", "routed_usd")


def _quality(quality: dict[str, Any] | None) -> list[str]:
    """The log's judgements and feedback per tier, rule and arm, beside the replay's cost."""
    if not quality:
        return []
    out = [
        "",
        f"quality   {quality['judged']:,} judged ({quality['judge_failed']:,} failed,"
        f" {quality['judge_skipped']:,} skipped), {quality['feedback']:,} feedback;"
        f" judging cost ${quality['judge_cost_usd']} (logged)",
    ]
    for dim in QUALITY_DIMS:
        if quality.get(dim):
            out += quality_table(f"quality by {dim}", quality[dim], ROUTED)
    return out


def _cascades(cascades: list[dict[str, Any]]) -> list[str]:
    if not cascades:
        return []
    out = ["", "cascades of these rules (estimated: cheap answer + escalation rate x escalated answer)"]
    for c in cascades:
        cheap, always = c["range_micro_usd"]
        out.append(
            f"  {c['tier']} -> {c['to']}: {c['requests']:,} requests, cheap answers ${usd(cheap)},"
            f" escalated answers ${usd(c['escalated_answer_micro_usd'])}"
        )
        if c["rate_measured"]:
            out.append(
                f"    escalation rate {c['escalation_rate']:.1%} (measured on {c['rate_measured_on']:,}"
                f" validated lines): estimated ${usd(c['estimated_micro_usd'])}"
            )
        else:
            out.append(
                f"    escalation rate unmeasured (no validated line of {c['tier']} in the log):"
                f" ${usd(cheap)} .. ${usd(always)}"
            )
    return out


def render_text(data: dict[str, Any]) -> str:
    t, lines_, assume = data["totals"], data["lines"], data["assumptions"]
    out = [
        f"replay of {data['log']} through {data['rules']} (no provider called)",
        f"lines     {lines_['total']:,}: {lines_['rerouted']:,} requests re-routed,"
        f" {lines_['router_log']:,} router log lines (priced as logged,"
        f" {lines_['router_log_unserved']:,} unserved), {lines_['skipped']:,} skipped",
        f"tokens    usage logged for {t['requests'] - assume['usage_estimated']:,} requests, estimated for"
        f" {assume['usage_estimated']:,} (completion: {assume['default_completion_tokens']} or max_tokens)",
    ]
    if assume["requested_model_unknown_routed_as_auto"]:
        out.append(
            f"models    {assume['requested_model_unknown_routed_as_auto']:,} requests named a model"
            " these rules do not know: routed as auto"
        )
    out += [
        f"baseline  every request on {data['baseline_model']}",
        "",
        f"routed    ${t['routed_usd']}",
        f"baseline  ${t['baseline_usd']}",
        f"saved     ${t['saved_usd']} ({t['savings_ratio']:.1%} of the baseline)",
    ]
    if t["logged_requests"]:
        out.append(f"logged    ${t['logged_usd']} actually spent on {t['logged_requests']:,} requests")
    for title, key in (("tier", "by_tier"), ("model (first in chain)", "by_model"), ("rule", "by_rule")):
        out += ["", *_table(title, data[key])]
    out += _results(data.get("results") or {})
    out += _quality(data.get("quality"))
    out += _cascades(data.get("cascades") or [])
    changes = data.get("changes")
    if changes is not None:
        out += [
            "",
            f"changes vs {data['against']}: {changes['changed_tier']:,} of {changes['compared']:,}"
            f" requests change tier ({changes['changed_rule_same_tier']:,} more change rule only);"
            f" cost ${usd(changes['old_routed_micro_usd'], 4)} -> ${usd(changes['new_routed_micro_usd'], 4)}"
            f" ({_signed_usd(changes['delta_micro_usd'])})",
        ]
        for tr in changes["transitions"]:
            out.append(
                f"  {tr['from']} -> {tr['to']}: {tr['requests']:,} requests,"
                f" {_signed_usd(tr['delta_micro_usd'])}"
            )
        for m in changes["requests"]:
            ident = f" id={m['id']}" if m["id"] is not None else ""
            out.append(
                f"  line {m['line']}{ident}: {m['from_tier']}/{m['from_rule']}"
                f" -> {m['to_tier']}/{m['to_rule']}"
            )
        hidden = changes["changed_tier"] - changes["requests_listed"]
        if hidden > 0:
            out.append(f"  ... and {hidden:,} more (raise --list)")
    out += conversations_text(data.get("conversations"))
    out += trend_text(data.get("trend"))
    errors = data["errors"]
    if errors["count"]:
        kinds = ", ".join(f"{k} {n:,}" for k, n in errors["by_kind"].items())
        out += ["", f"skipped   {errors['count']:,} lines ({kinds})"]
        out += [f"  line {e['line']}: {e['reason']}" for e in errors["first"]]
        if errors["count"] > len(errors["first"]):
            out.append(f"  ... and {errors['count'] - len(errors['first']):,} more")
    return "\n".join(out)


# -- HTML ------------------------------------------------------------------------------------

_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")


def svg_bars(title: str, bars: list[tuple[str, int, str]]) -> str:
    """A horizontal bar chart of micro-dollar amounts, as inline SVG (no scripts)."""
    width, label_w, value_w, bar_h, gap = 640, 150, 110, 24, 8
    top = 30
    height = top + len(bars) * (bar_h + gap) + 4
    peak = max((v for _, v, _ in bars), default=0) or 1
    span = width - label_w - value_w
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img"'
        f' aria-label="{html.escape(title)}">',
        f'<text x="0" y="18" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (label, value, color) in enumerate(bars):
        y = top + i * (bar_h + gap)
        w = max(round(span * value / peak), 1 if value else 0)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="{color}"/>'
            f'<text x="{label_w + w + 6}" y="{y + 16}">${usd(value, 4)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _html_table(title: str, rows: dict[str, dict[str, Any]]) -> str:
    head = (
        f"<tr><th>{html.escape(title)}</th><th>requests</th><th>share</th><th>prompt tokens</th>"
        "<th>completion tokens</th><th>routed $</th><th>cost share</th><th>baseline $</th></tr>"
    )
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{r['requests']:,}</td><td>{r['share']:.1%}</td>"
        f"<td>{r['prompt_tokens']:,}</td><td>{r['completion_tokens']:,}</td><td>{r['routed_usd']}</td>"
        f"<td>{r['cost_share']:.1%}</td><td>{r['baseline_usd']}</td></tr>"
        for name, r in rows.items()
    )
    return f"<table>{head}{body}</table>"


def _html_results(results: dict[str, dict[str, dict[str, Any]]], cascades: list[dict[str, Any]]) -> list[str]:
    """The logged results per tier, rule, model and arm, and the cascade estimates."""
    esc = html.escape
    columns = ("requests", "cost_usd", "avg_latency_ms", "error_rate", "escalation_rate", "success_rate")
    sections = []
    for dim in ("tier", "rule", "model", "arm"):
        if not results.get(dim):
            continue
        head = "".join(f"<th>{c}</th>" for c in (dim, *columns, "cost_per_success_usd"))
        body = "".join(
            f"<tr><td>{esc(name)}</td>"
            + "".join(f"<td>{'-' if row[c] is None else esc(str(row[c]))}</td>" for c in columns)
            + f"<td>{esc(str(row['cost_per_success_usd'] or '-'))}</td></tr>"
            for name, row in results[dim].items()
        )
        sections.append(f"<h2>Results by {dim} (logged)</h2><table><tr>{head}</tr>{body}</table>")
    if cascades:
        items = "".join(
            f"<li>{esc(c['tier'])} → {esc(c['to'])}: {c['requests']:,} requests, "
            + (
                f"escalation rate {c['escalation_rate']:.1%} (measured on {c['rate_measured_on']:,} lines):"
                f" estimated ${c['estimated_usd']}"
                if c["rate_measured"]
                else f"escalation rate unmeasured: ${usd(c['range_micro_usd'][0])}"
                f" .. ${usd(c['range_micro_usd'][1])}"
            )
            + "</li>"
            for c in cascades
        )
        sections.append(f"<h2>Cascades of these rules (estimated)</h2><ul>{items}</ul>")
    return sections


def _html_quality(quality: dict[str, Any] | None) -> list[str]:
    if not quality:
        return []
    esc = html.escape
    head = "".join(
        f"<th>{c}</th>"
        for c in ("judged", "win / tie / loss", "loss rate (95% CI)", "score", "ref.", "feedback", "fb avg")
    )
    sections = [
        f"<h2>Quality (logged)</h2><p>{quality['judged']:,} judged ({quality['judge_failed']:,} failed,"
        f" {quality['judge_skipped']:,} skipped), {quality['feedback']:,} feedback;"
        f" judging cost ${quality['judge_cost_usd']}.</p>"
    ]
    for dim in QUALITY_DIMS:
        rows = []
        for name, r in (quality.get(dim) or {}).items():
            loss = "-"
            if r["loss_rate"] is not None:
                loss = f"{r['loss_rate']:.1%} [{r['loss_rate_ci'][0]:.1%}, {r['loss_rate_ci'][1]:.1%}]"
            cells = (
                r["samples"],
                f"{r['wins']} / {r['ties']} / {r['losses']}",
                loss,
                "-" if r["score"] is None else f"{r['score']:.2f}",
                "-" if r["reference_score"] is None else f"{r['reference_score']:.2f}",
                r["feedback"],
                "-" if r["feedback_score"] is None else f"{r['feedback_score']:.2f}",
                "-" if r["requests"] is None else r["requests"],
                r["routed_usd"] or "-",
            )
            tds = "".join(f"<td>{esc(str(c))}</td>" for c in cells)
            rows.append(f"<tr><td>{esc(name)}</td>{tds}</tr>")
        if rows:
            head_row = f"<tr><th>{dim}</th>{head}<th>requests</th><th>routed $</th></tr>"
            sections.append(f"<table>{head_row}{''.join(rows)}</table>")
    return sections


def render_html(data: dict[str, Any]) -> str:
    esc = html.escape
    t = data["totals"]
    tiers = [
        (name, r["routed_micro_usd"], _COLORS[i % len(_COLORS)])
        for i, (name, r) in enumerate(data["by_tier"].items())
    ]
    versus = [
        (f"baseline: {data['baseline_model']}", t["baseline_micro_usd"], "#e15759"),
        ("routed", t["routed_micro_usd"], "#59a14f"),
    ]
    sections = [
        f"<h1>tier-router replay</h1><p>{esc(data['log'])} through {esc(data['rules'])}"
        " — no provider called.</p>",
        f"<p class=big>routed <b>${t['routed_usd']}</b> vs baseline <b>${t['baseline_usd']}</b>:"
        f" saved <b>${t['saved_usd']}</b> ({t['savings_ratio']:.1%}) on {t['requests']:,} requests.</p>",
        svg_bars("Baseline vs routed (USD)", versus),
        svg_bars("Routed cost by tier (USD)", tiers),
        "<h2>By tier</h2>" + _html_table("tier", data["by_tier"]),
        "<h2>By model (first in chain)</h2>" + _html_table("model", data["by_model"]),
        "<h2>By rule</h2>" + _html_table("rule", data["by_rule"]),
    ]
    sections += _html_results(data.get("results") or {}, data.get("cascades") or [])
    sections += _html_quality(data.get("quality"))
    changes = data.get("changes")
    if changes is not None:
        items = "".join(
            f"<li>{esc(tr['from'])} → {esc(tr['to'])}: {tr['requests']:,} requests,"
            f" {esc(_signed_usd(tr['delta_micro_usd']))}</li>"
            for tr in changes["transitions"]
        )
        sections.append(
            f"<h2>Changes vs {esc(str(data['against']))}</h2><p>{changes['changed_tier']:,} of"
            f" {changes['compared']:,} requests change tier;"
            f" cost {_signed_usd(changes['delta_micro_usd'])}.</p>"
            f"<ul>{items}</ul>"
        )
    sections += conversations_html(data.get("conversations"))
    sections += trend_html(data.get("trend"))
    errors = data["errors"]
    if errors["count"]:
        items = "".join(f"<li>line {e['line']}: {esc(e['reason'])}</li>" for e in errors["first"])
        sections.append(f"<h2>Skipped lines: {errors['count']:,}</h2><ul>{items}</ul>")
    lines_ = data["lines"]
    sections.append(
        f"<p class=note>{lines_['total']:,} lines: {lines_['rerouted']:,} re-routed,"
        f" {lines_['router_log']:,} router log lines priced as logged, {lines_['skipped']:,} skipped."
        f" Tokens estimated for {data['assumptions']['usage_estimated']:,} requests"
        f" (completion: {data['assumptions']['default_completion_tokens']} or max_tokens if smaller).</p>"
    )
    style = (
        "body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:60em}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px}"
        "td:not(:first-child){text-align:right}svg{display:block;margin:1em 0;font:13px sans-serif}"
        ".big{font-size:1.2em}.note{color:#555}"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tier-router replay</title>'
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n"
    )
