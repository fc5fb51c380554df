"""The request log a replay reads: opening it, the lines it accepts, progress while reading.

The log is JSON Lines, read one line at a time (`.gz` is decompressed, `-` is stdin).
Accepted lines (one JSON object each; blank lines are ignored):

- a chat request body: `{"model": ..., "messages": [...], ...}`;
- a wrapped one: `{"request": BODY}` or `{"body": BODY}` (the OpenAI Batch API input shape),
  optionally with what actually happened: `"response": {"model", "usage"}` or top-level
  `"usage"`, `"cost_micro_usd"` / `"cost_usd"`, and `"headers"` (the request's headers, for
  header conditions), and `"key"` (the router key's name: conversations are identified within
  it, as the router does). An id is taken from `custom_id`, `request_id` or `id`.
- the router's own access-log line (`{"event": "request", ...}`, see `app.log_request`).
  It carries no prompt text, so it cannot be re-routed: its tier, rule and model are kept as
  logged, its routed cost is the logged `cost_micro_usd` (or, if absent, its tokens at the
  logged model's current price), and its tokens are priced at the baseline model. Lines of
  requests no model served (refused, failed, client errors) are counted but not priced.
  They take no part in `--against` comparisons.
- any of these may carry `ts`, when it was logged (Unix seconds, as the router writes it, or an
  ISO 8601 string): conversations (`replay.conversations`) and the trend (`replay.trend`) use it.
- a judgement or feedback line (`{"type": "judgement" | "feedback", ...}`): not a request;
  counted as quality (`replay.quality`).
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
import sys
import time
from pathlib import Path
from typing import IO, Any

from tier_router.errors import RouterError

PROGRESS_MIN_LINES = 5000
"""Progress is shown only for logs longer than this."""


class ReplayError(RouterError):
    """The replay cannot start (unreadable log, unknown baseline model)."""


def open_log(path: str | Path) -> tuple[IO[bytes], int | None]:
    """The log as a binary stream, and its size in bytes when known (for progress)."""
    if str(path) == "-":
        return sys.stdin.buffer, None
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.suffix == ".gz":
            return gzip.open(path, "rb"), None
        return path.open("rb"), size
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from None


class Progress:
    """`\\r`-updated progress on stderr, past PROGRESS_MIN_LINES lines, ~4 times a second; the
    final count always (a short log shows it once, at the end)."""

    def __init__(self, stream: IO[str], total_bytes: int | None, min_lines: int = PROGRESS_MIN_LINES):
        self.stream = stream
        self.total = total_bytes
        self.min_lines = min_lines
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = False

    def update(self, lines: int, done_bytes: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and (lines < self.min_lines or now - self.last < 0.25):
            return
        self.last = now
        rate = lines / max(now - self.started, 1e-9)
        where = f"{done_bytes / 1e6:,.1f} MB"
        if self.total:
            where += f" of {self.total / 1e6:,.1f} MB ({100 * done_bytes / self.total:.0f}%)"
        self.stream.write(f"\rreplay: {lines:,} lines, {where}, {rate:,.0f} lines/s ")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def body_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The chat request body of a line: bare, or under `request` / `body`; None if neither."""
    for key in ("request", "body"):
        inner = obj.get(key)
        if isinstance(inner, dict):
            return inner
    return obj if "messages" in obj else None


def headers_of(obj: dict[str, Any]) -> dict[str, str]:
    """The line's logged request headers, names lower-cased (empty when absent or malformed)."""
    raw = obj.get("headers")
    if not isinstance(raw, dict):
        return {}
    return {str(k).lower(): str(v) for k, v in raw.items()}


def timestamp(value: Any) -> float | None:
    """A line's `ts` as Unix seconds: a number (as the router logs it) or an ISO 8601 string
    (naive: UTC); None when absent or unusable (a log is data: a bad `ts` is no `ts`)."""
    if value.__class__ in (int, float):
        return float(value) if math.isfinite(value) and value > 0 else None
    if value.__class__ is str:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        try:
            return parsed.timestamp()
        except (OverflowError, OSError, ValueError):
            return None
    return None
