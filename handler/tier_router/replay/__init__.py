"""`tier-router replay LOG`: what would routing have cost — and saved — on real traffic?

Reads a request log (JSON Lines) one line at a time, runs every request through the rules
without calling any provider, prices it, and aggregates per tier, model and rule. Memory is
bounded: nothing per record is kept except the first few errors and tier changes, and one
small entry per conversation seen within `conversations.ttl_s`.

Modules, one job each (the CLI imports this package only when `replay` runs: it is never on
the request path):

- `log`      — the request log: opening it (`.gz`, stdin), the lines it accepts, progress.
- `pricing`  — tokens of a logged or estimated usage, priced on one model (`Rate`).
- `audit`    — `Audit`: the bounded running totals by tier, model and rule, the logged
               results (`spend.results`) and the cascades of the new rules.
- `quality`  — `QualityLog`: the log's judgement and feedback lines, counted per tier, rule,
               model and arm (never routed or priced).
- `conversations` — `Turns`: each conversation's turns placed as the router would (`Sticky`,
               per rules set) and as logged; switches and cache savings per set (`Tally`).
- `trend`    — `Trend`: logged tokens and cost per request per UTC day and model.
- `replayer` — `Replayer`: each line through the rules (and `--against` older ones);
               `replay`: one log file in, the report out.
- `report`   — `report`: the `--json` object (schema `tier-router.replay/1`), with
               `results` and `cascades` (`cascade_estimates`: cheap + rate × escalated).
- `render`   — the report as text (the CLI's output) and as a self-contained HTML page
               (`render_conversations`: its conversations and trend sections).
"""

from tier_router.replay.audit import MAX_ERRORS_LISTED, Audit, Row
from tier_router.replay.log import PROGRESS_MIN_LINES, Progress, ReplayError, open_log
from tier_router.replay.pricing import (
    DEFAULT_COMPLETION_TOKENS,
    Rate,
    default_baseline,
    estimated_completion,
    usage_tokens,
)
from tier_router.replay.render import render_html, render_text, svg_bars
from tier_router.replay.replayer import SERVED_ERROR_STATUS, Replayer, replay
from tier_router.replay.report import SCHEMA, report

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "MAX_ERRORS_LISTED",
    "PROGRESS_MIN_LINES",
    "SCHEMA",
    "SERVED_ERROR_STATUS",
    "Audit",
    "Progress",
    "Rate",
    "ReplayError",
    "Replayer",
    "Row",
    "default_baseline",
    "estimated_completion",
    "open_log",
    "render_html",
    "render_text",
    "replay",
    "report",
    "svg_bars",
    "usage_tokens",
]
