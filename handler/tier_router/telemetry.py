"""The per-request log line, which doubles as CloudWatch metrics.

One compact JSON object per request on stdout: routing facts and numbers only — never prompt
or completion text, never keys. Written straight to the stream rather than through `logging`:
a LogRecord, caller lookup and formatter cost more than the rest of the line, and this runs on
every request. On Lambda, stdout goes to CloudWatch Logs line by line.

With EMF on (the default on Lambda), the same line carries an `_aws` block in CloudWatch's
Embedded Metric Format, so CloudWatch extracts metrics from the log stream itself: no
PutMetricData calls, no extra latency, no SDK import. Metrics (namespace `TierRouter`):
Requests, Errors, Fallbacks, LatencyMs, UpstreamMs, PromptTokens, CompletionTokens, CostUSD,
CacheHits, Downgrades, InputTokens, OutputTokens, CachedTokens (prompt-cache reads) and
CacheSavings (micro-dollars) — by tier, and by model + provider; Validated / Escalations by
`routed_tier` (the tier the rules chose, whose answers a cascade checks: an alarm on
Escalations / Validated is an alarm on that tier's answer quality); and, on an answered
request whose model has a baseline (`spend.baseline`), OutputTokensVsLastWeek — its output
tokens over its model's per-request average of the week before last — by model and for the
whole router (no dimension): its daily Average is this week's over last week's, which the
token-inflation alarm watches. (Each dimension combination is a custom metric CloudWatch
bills for; that is why the sets stay this small.)
"""

from __future__ import annotations

import asyncio
import atexit
import json
import sys
import time
from typing import Any, Protocol, TextIO

FLUSH_S = 0.2
FLUSH_LINES = 256
NAMESPACE = "TierRouter"
METRICS = [
    {"Name": "Requests", "Unit": "Count"},
    {"Name": "Errors", "Unit": "Count"},
    {"Name": "Fallbacks", "Unit": "Count"},
    {"Name": "LatencyMs", "Unit": "Milliseconds"},
    {"Name": "UpstreamMs", "Unit": "Milliseconds"},
    {"Name": "PromptTokens", "Unit": "Count"},
    {"Name": "CompletionTokens", "Unit": "Count"},
    {"Name": "CostUSD", "Unit": "None"},
    {"Name": "CacheHits", "Unit": "Count"},
    {"Name": "Downgrades", "Unit": "Count"},
    {"Name": "InputTokens", "Unit": "Count"},
    {"Name": "OutputTokens", "Unit": "Count"},
    {"Name": "CachedTokens", "Unit": "Count"},
    {"Name": "CacheSavings", "Unit": "None"},
]
DIMENSIONS = [["tier"], ["model", "provider"]]
CASCADE_METRICS = [{"Name": "Validated", "Unit": "Count"}, {"Name": "Escalations", "Unit": "Count"}]
INFLATION = {
    "Namespace": NAMESPACE,
    "Dimensions": [[], ["model"]],
    "Metrics": [{"Name": "OutputTokensVsLastWeek", "Unit": "None"}],
}
"""The token-inflation metric's directive: by model, and the router's as a whole."""


class Baselines(Protocol):
    """Last week's output tokens per request of each model (`spend.baseline.Baseline`)."""

    def ratio(self, model: str, output_tokens: int) -> float | None: ...


class AccessLog:
    """`buffered` (local serving): lines are collected and written together at most every
    FLUSH_S, one syscall for many requests. Unbuffered (Lambda, tests): written at once, so
    nothing is lost when the invocation ends and the container freezes."""

    def __init__(
        self, stream: TextIO | None = None, *, enabled: bool = True, emf: bool = False, buffered: bool = False
    ) -> None:
        self._stream = stream
        self.enabled = enabled
        self.emf = emf
        self.buffered = buffered
        self.baseline: Baselines | None = None
        """With EMF: the baseline of each model's OutputTokensVsLastWeek (the gateway's)."""
        self._pending: list[str] = []
        self._flush_scheduled = False
        if buffered:
            atexit.register(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._pending:
            lines, self._pending = self._pending, []
            stream = self._stream or sys.stdout
            stream.write("".join(lines))
            stream.flush()

    def _emit(self, line: str) -> None:
        if not self.buffered:
            stream = self._stream or sys.stdout  # looked up late so test capture and redirection work
            stream.write(line)
            stream.flush()
            return
        self._pending.append(line)
        if len(self._pending) >= FLUSH_LINES:
            self.flush()
        elif not self._flush_scheduled:
            try:
                asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
                self._flush_scheduled = True
            except RuntimeError:  # no event loop (CLI, tests): write now
                self.flush()

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        now = time.time()
        record["ts"] = round(now, 3)
        if self.emf and "_aws" not in record and record.get("event") == "request":
            # the request metrics; other lines (feedback) bring their own or none
            add_emf(record, now, self.baseline)
        self._emit(json.dumps(record, separators=(",", ":"), default=str) + "\n")

    def event(self, name: str, **fields: str) -> None:
        """A rare operational event (e.g. a breaker opened): its own line, and a metric
        dimensioned by its string fields."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"event": name, **fields}
        if self.emf:
            record[name] = 1
            record["_aws"] = emf_block(time.time(), directive([sorted(fields)], [name]))
        self.write(record)


def directive(dimensions: list[list[str]], counts: list[str]) -> dict[str, Any]:
    """An EMF directive in the router's namespace: `counts` (Count metrics) by `dimensions`."""
    metrics = [{"Name": name, "Unit": "Count"} for name in counts]
    return {"Namespace": NAMESPACE, "Dimensions": dimensions, "Metrics": metrics}


def emf_block(now: float, *directives: dict[str, Any]) -> dict[str, Any]:
    """A line's `_aws` block: when, and which of its fields are metrics (`directives`)."""
    return {"Timestamp": int(now * 1000), "CloudWatchMetrics": list(directives)}


def add_emf(record: dict[str, Any], now: float, baseline: Baselines | None = None) -> None:
    """Metric values as top-level fields, plus the `_aws` directive that names them."""
    attempts = record.get("attempts") or []
    escalations = len(record.get("escalations") or ())  # each escalated tier's first try is no fallback
    tried = sum(1 for a in attempts if a.get("tried", True) and not a.get("retry"))
    record.update(
        {
            "Requests": 1,
            "Errors": 0 if record.get("status", 200) < 400 else 1,
            "Fallbacks": max(0, tried - 1 - escalations),
            "LatencyMs": record.get("latency_ms", 0),
            "UpstreamMs": record.get("upstream_ms", 0),
            "PromptTokens": record.get("prompt_tokens") or 0,
            "CompletionTokens": record.get("completion_tokens") or 0,
            "CostUSD": (record.get("cost_micro_usd") or 0) / 1_000_000,
            "CacheHits": 1 if record.get("cache") == "hit" else 0,
            "Downgrades": 1 if record.get("downgraded_from") else 0,
            "InputTokens": record.get("prompt_tokens") or 0,
            "OutputTokens": record.get("completion_tokens") or 0,
            "CachedTokens": record.get("cached_tokens") or 0,
            "CacheSavings": record.get("cache_savings_micro_usd") or 0,
        }
    )
    ratio = None
    output, model = record.get("completion_tokens"), record.get("model")
    if baseline is not None and record.get("outcome") == "ok" and type(output) is int and model:
        ratio = baseline.ratio(model, output)
    for name in ("tier", "model", "provider"):
        if not record.get(name):
            record[name] = "-"  # EMF dimensions must be strings
    directives = [{"Namespace": NAMESPACE, "Dimensions": DIMENSIONS, "Metrics": METRICS}]
    if record.get("cascade"):  # the answer was validated by a cascade
        record["routed_tier"] = record.get("escalated_from") or record["tier"]
        record["Validated"] = 1
        record["Escalations"] = 1 if escalations else 0
        directives.append(
            {"Namespace": NAMESPACE, "Dimensions": [["routed_tier"]], "Metrics": CASCADE_METRICS}
        )
    if ratio is not None:
        record["OutputTokensVsLastWeek"] = ratio
        directives.append(INFLATION)
    record["_aws"] = emf_block(now, *directives)
