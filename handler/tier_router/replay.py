"""`tier-router replay LOG`: what would routing have cost — and saved — on real traffic?

Reads a request log (JSON Lines) one line at a time, runs every request through the rules
without calling any provider, prices it, and aggregates per tier, model and rule. Memory is
bounded: nothing per record is kept except the first few errors and tier changes.

Accepted lines (one JSON object each; blank lines are ignored):

- a chat request body: `{"model": ..., "messages": [...], ...}`;
- a wrapped one: `{"request": BODY}` or `{"body": BODY}` (the OpenAI Batch API input shape),
  optionally with what actually happened: `"response": {"model", "usage"}` or top-level
  `"usage"`, `"cost_micro_usd"` / `"cost_usd"`, and `"headers"` (the request's headers, for
  header conditions). An id is taken from `custom_id`, `request_id` or `id`.
- the router's own access-log line (`{"event": "request", ...}`, see `app.log_request`).
  It carries no prompt text, so it cannot be re-routed: its tier, rule and model are kept as
  logged, its routed cost is the logged `cost_micro_usd` (or, if absent, its tokens at the
  logged model's current price), and its tokens are priced at the baseline model. Lines of
  requests no model served (refused, failed, client errors) are counted but not priced.
  They take no part in `--against` comparisons.

Requested model: the logged `model` when the rules know it (a tier, model or alias), else
`auto` — a log from before the router names provider models the rules may not list. `--model`
forces one name for every request (e.g. `auto`: "route everything by the rules").

Tokens: the logged usage when present (re-priced as is: the same prompt and completion
counts on a different model is an approximation — tokenizers differ by ±10-30%); otherwise
prompt tokens are the rules' own estimate (`Features.conversation_tokens`) and completion
tokens are `DEFAULT_COMPLETION_TOKENS` (300), or the request's `max_tokens` if smaller.

Cost: a routed request is priced at the FIRST model of its chain (what serves when every
model is healthy); the baseline prices the same tokens at one model (`--baseline`, default:
the dearest model of the rules file). Both in integer micro-dollars, rounded up per request
exactly like `spend.pricing.cost_micro_usd` (cache discounts in a logged usage included).
"""

from __future__ import annotations

import gzip
import html
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from tier_router.errors import RouterError
from tier_router.request_line import CHAT_PATHS, RequestLine
from tier_router.routing.engine import AUTO, Rules, UnknownModelError
from tier_router.routing.request import MAY_HOLD_SURROGATES, Chat, parse_chat
from tier_router.schema import Price
from tier_router.spend.pricing import Rates, cost_micro_usd, rates_of, usd

SCHEMA = "tier-router.replay/1"
DEFAULT_COMPLETION_TOKENS = 300
"""Completion tokens assumed for a request whose log has no usage (capped by its max_tokens)."""
PROGRESS_MIN_LINES = 5000
"""Progress is shown only for logs longer than this."""
MAX_ERRORS_LISTED = 20
SERVED_ERROR_STATUS = 400


class ReplayError(RouterError):
    """The replay cannot start (unreadable log, unknown baseline model)."""


# -- pricing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rate:
    """One model's price, ready for integer math (`rates` is None if a price has > 12 decimals)."""

    price: Price
    rates: Rates | None

    @classmethod
    def of(cls, price: Price) -> Rate:
        return cls(price, rates_of(price))

    def cost(self, prompt: int, completion: int, usage: Mapping[str, Any] | None) -> int:
        """Micro-dollars, rounded up; equal to `cost_micro_usd(price, usage)`."""
        if usage is None and self.rates is not None:
            return self.rates.plain_cost(prompt, completion)
        if usage is None:
            usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        return cost_micro_usd(self.price, usage)


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def usage_tokens(usage: Any) -> tuple[int, int, Mapping[str, Any] | None] | None:
    """(prompt, completion, usage-for-pricing) from a logged usage; None when it has no counts.

    The third item is None when plain integer math is exact (no cache details), else the
    usage itself, priced by `cost_micro_usd`."""
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    if prompt is not None and completion is not None:
        details = usage.get("prompt_tokens_details")
        if isinstance(details, Mapping) and any(details.values()):
            return prompt, completion, usage
        return prompt, completion, None
    total = _count(usage.get("total_tokens"))
    if prompt is None and completion is None and total is None:
        return None
    if completion is None:
        completion = max((total or 0) - (prompt or 0), 0)
    if prompt is None:
        prompt = max((total or 0) - completion, 0)
    return prompt, completion, usage


def estimated_completion(max_tokens: int | None) -> int:
    return min(max_tokens, DEFAULT_COMPLETION_TOKENS) if max_tokens else DEFAULT_COMPLETION_TOKENS


def default_baseline(rules: Rules) -> str:
    """The dearest model: highest output price, then input price, then name."""
    return max(rules.routes.values(), key=lambda r: (r.price.output, r.price.input, r.name)).name


# -- aggregation -----------------------------------------------------------------------------

# One row of a breakdown: [requests, prompt tokens, completion tokens, routed µ$, baseline µ$]
Row = list[int]


def _add(table: dict[str, Row], key: str, prompt: int, completion: int, routed: int, base: int) -> None:
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


# -- reading ---------------------------------------------------------------------------------


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
    """`\\r`-updated progress on stderr, past PROGRESS_MIN_LINES lines, ~4 times a second."""

    def __init__(self, stream: IO[str], total_bytes: int | None, min_lines: int = PROGRESS_MIN_LINES):
        self.stream = stream
        self.total = total_bytes
        self.min_lines = min_lines
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = False

    def update(self, lines: int, done_bytes: int, final: bool = False) -> None:
        now = time.monotonic()
        if lines < self.min_lines or (now - self.last < 0.25 and not final):
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


def _body_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    for key in ("request", "body"):
        inner = obj.get(key)
        if isinstance(inner, dict):
            return inner
    return obj if "messages" in obj else None


def _headers_of(obj: dict[str, Any]) -> dict[str, str]:
    raw = obj.get("headers")
    if not isinstance(raw, dict):
        return {}
    return {str(k).lower(): str(v) for k, v in raw.items()}


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first['msg']}" if where else first["msg"]


# -- the replay ------------------------------------------------------------------------------


class Replayer:
    def __init__(
        self,
        rules: Rules,
        *,
        baseline: str | None = None,
        against: Rules | None = None,
        model: str | None = None,
        list_limit: int = 50,
    ) -> None:
        self.rules = rules
        self.against = against
        self.baseline = baseline or default_baseline(rules)
        route = rules.routes.get(self.baseline)
        if route is None:
            raise ReplayError(
                f"unknown baseline model {self.baseline!r}: use one of {', '.join(sorted(rules.routes))}"
            )
        if model is not None and model not in rules.targets:
            raise ReplayError(
                f"--model {model!r} is not a name these rules know: {', '.join(rules.valid_names)}"
            )
        self.model = model
        self.base_rate = Rate.of(route.price)
        self.rates = {name: Rate.of(r.price) for name, r in rules.routes.items()}
        self.old_rates = {name: Rate.of(r.price) for name, r in against.routes.items()} if against else {}
        self.list_limit = list_limit
        self.audit = Audit()

    def run(self, stream: IO[bytes], progress: Progress | None = None) -> Audit:
        audit = self.audit
        loads = json.loads
        lineno = 0
        done = 0
        for raw in stream:
            lineno += 1
            if progress is not None:
                done += len(raw)
                if not lineno & 1023:
                    progress.update(lineno, done)
            if not raw.strip():
                audit.blank += 1
                continue
            try:
                obj = loads(raw)
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                audit.error(lineno, "invalid JSON", str(exc)[:120])
                continue
            if not isinstance(obj, dict):
                audit.error(lineno, "not a JSON object", type(obj).__name__)
                continue
            try:
                if obj.get("event") == "request" and "messages" not in obj:
                    self.router_line(lineno, obj)
                else:
                    self.request_line(lineno, obj, text_checked=MAY_HOLD_SURROGATES.search(raw) is None)
            except Exception as exc:  # never let one odd line end a million-line replay
                audit.error(lineno, "unexpected error", f"{type(exc).__name__}: {exc}"[:200])
        audit.lines = lineno
        if progress is not None:
            progress.update(lineno, done, final=True)
            progress.close()
        return audit

    def _requested(self, rules: Rules, name: Any) -> str:
        if self.model is not None:
            return self.model if self.model in rules.targets else AUTO
        return name if isinstance(name, str) and name in rules.targets else AUTO

    def request_line(self, lineno: int, obj: dict[str, Any], *, text_checked: bool = False) -> None:
        audit = self.audit
        body = _body_of(obj)
        if body is None:
            audit.error(lineno, "no chat request", "expected messages, request or body")
            return
        logged_name = body.get("model")
        requested = self._requested(self.rules, logged_name)
        if requested != logged_name:
            body = {**body, "model": requested}
            if self.model is None:
                audit.requested_unknown += 1
        try:
            request = parse_chat(body, text_checked=text_checked)
        except ValidationError as exc:
            audit.error(lineno, "invalid request", _validation_message(exc))
            return
        headers = _headers_of(obj) if "headers" in obj else {}
        try:
            decision = self.rules.decide(request, headers)
        except UnknownModelError as exc:  # only reachable through odd aliases; kept for safety
            audit.error(lineno, "unknown model", exc.requested)
            return
        response = obj.get("response")
        usage = obj.get("usage")
        if usage is None and isinstance(response, dict):
            usage = response.get("usage")
        counted = usage_tokens(usage)
        if counted is None:
            prompt = decision.features.conversation_tokens
            completion = estimated_completion(decision.features.max_tokens)
            priced = None
            audit.estimated_usage += 1
        else:
            prompt, completion, priced = counted
        route = decision.candidates[0]
        routed = self.rates[route.name].cost(prompt, completion, priced)
        base = self.base_rate.cost(prompt, completion, priced)
        tier = decision.tier or "-"
        audit.rerouted += 1
        _add(audit.by_tier, tier, prompt, completion, routed, base)
        _add(audit.by_model, route.name, prompt, completion, routed, base)
        _add(audit.by_rule, decision.label, prompt, completion, routed, base)
        if counted is not None or "cost_micro_usd" in obj or "cost_usd" in obj:
            self._logged(obj, response, counted)
        if self.against is not None:
            self.compare(
                lineno,
                obj,
                logged_name,
                request,
                headers,
                tier,
                decision.label,
                routed,
                prompt,
                completion,
                priced,
            )

    def _logged(
        self, obj: dict[str, Any], response: Any, counted: tuple[int, int, Mapping[str, Any] | None] | None
    ) -> None:
        """What the request actually cost, when the log says (or lets us compute it)."""
        micro = obj.get("cost_micro_usd")
        if type(micro) is not int or micro < 0:
            dollars = obj.get("cost_usd")
            micro = None
            if type(dollars) in (int, float) and math.isfinite(dollars) and dollars >= 0:
                micro = round(dollars * 1_000_000)
            elif counted is not None:
                used = obj.get("model_used")
                if used is None and isinstance(response, dict):
                    used = response.get("model")
                rate = self.rates.get(used) if isinstance(used, str) else None
                if rate is not None:
                    micro = rate.cost(*counted)
        if micro is not None:
            self.audit.logged_requests += 1
            self.audit.logged_micro += micro

    def compare(
        self,
        lineno: int,
        obj: dict[str, Any],
        logged_name: Any,
        request: Chat,
        headers: dict[str, str],
        tier: str,
        rule: str,
        routed: int,
        prompt: int,
        completion: int,
        priced: Mapping[str, Any] | None,
    ) -> None:
        audit = self.audit
        assert self.against is not None
        old_name = self._requested(self.against, logged_name)
        if old_name != request.model:
            request = request.model_copy(update={"model": old_name})
        try:
            old = self.against.decide(request, headers)
            old_tier, old_rule = old.tier or "-", old.label
            old_routed = self.old_rates[old.candidates[0].name].cost(prompt, completion, priced)
        except UnknownModelError:
            old_tier, old_rule, old_routed = "(unknown model)", "-", 0
        audit.compared += 1
        audit.old_routed_micro += old_routed
        audit.new_routed_micro += routed
        if old_tier == tier:
            if old_rule != rule:
                audit.rule_changed += 1
            return
        audit.changed += 1
        key = (old_tier, tier)
        entry = audit.transitions.get(key)
        if entry is None:
            audit.transitions[key] = [1, old_routed, routed]
        else:
            entry[0] += 1
            entry[1] += old_routed
            entry[2] += routed
        if len(audit.moved) < self.list_limit:
            ident = obj.get("custom_id") or obj.get("request_id") or obj.get("id")
            audit.moved.append(
                {
                    "line": lineno,
                    "id": ident if isinstance(ident, str | int) else None,
                    "from_tier": old_tier,
                    "from_rule": old_rule,
                    "to_tier": tier,
                    "to_rule": rule,
                    "delta_micro_usd": routed - old_routed,
                }
            )

    def router_line(self, lineno: int, obj: dict[str, Any]) -> None:
        """The router's own log line (`RequestLine`): priced as logged (no prompt text to
        re-route). Lines of other paths (status, health checks) are not requests to price."""
        line = RequestLine.read(obj)
        if line is None or (line.path and line.path not in CHAT_PATHS):
            return
        audit = self.audit
        audit.router_lines += 1
        model = line.model
        if model is None or line.status >= SERVED_ERROR_STATUS:
            audit.router_unserved += 1
            return
        features = line.features or {}
        prompt, completion = line.prompt_tokens, line.completion_tokens
        if prompt is None or completion is None:
            audit.estimated_usage += 1
            if prompt is None:
                prompt = _count(features.get("conversation_tokens")) or 0
            if completion is None:
                completion = estimated_completion(_count(features.get("max_tokens")))
        logged = line.cost_micro_usd
        rate = self.rates.get(model)
        if logged is not None and logged >= 0:
            routed = logged
            audit.logged_requests += 1
            audit.logged_micro += logged
        elif rate is not None:
            routed = rate.cost(prompt, completion, None)
        else:
            audit.error(lineno, "router line without cost", f"model {model!r} is not in the rules")
            return
        base = self.base_rate.cost(prompt, completion, None)
        _add(audit.by_tier, line.tier or "-", prompt, completion, routed, base)
        _add(audit.by_model, model, prompt, completion, routed, base)
        _add(audit.by_rule, line.rule or "-", prompt, completion, routed, base)


def replay(
    log: str | Path,
    rules: Rules,
    *,
    baseline: str | None = None,
    against: Rules | None = None,
    model: str | None = None,
    list_limit: int = 50,
    progress: bool | None = None,
    rules_path: str | None = None,
    against_path: str | None = None,
    progress_stream: IO[str] | None = None,
) -> dict[str, Any]:
    """Replay a log file and return the report (the `--json` object).

    `progress`: True forces it, None shows it when stderr is a terminal, False never."""
    replayer = Replayer(rules, baseline=baseline, against=against, model=model, list_limit=list_limit)
    stream, size = open_log(log)
    err = progress_stream or sys.stderr
    show = progress if progress is not None else err.isatty()
    started = time.perf_counter()
    try:
        audit = replayer.run(stream, Progress(err, size) if show else None)
    except OSError as exc:  # e.g. a truncated .gz
        raise ReplayError(f"cannot read {log}: {exc}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    elapsed = time.perf_counter() - started
    return report(
        audit,
        log=str(log),
        rules=rules_path or str(rules.source or "<rules>"),
        against=None if against is None else (against_path or str(against.source or "<rules>")),
        baseline=replayer.baseline,
        elapsed=elapsed,
    )


# -- the report ------------------------------------------------------------------------------


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _rows(table: dict[str, Row], requests: int, routed_total: int) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (n, prompt, completion, routed, base) in sorted(
        table.items(), key=lambda kv: (-kv[1][3], kv[0])
    ):
        out[name] = {
            "requests": n,
            "share": _ratio(n, requests),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "routed_micro_usd": routed,
            "routed_usd": usd(routed),
            "cost_share": _ratio(routed, routed_total),
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
            "savings_ratio": _ratio(saved, base),
            "logged_requests": audit.logged_requests,
            "logged_micro_usd": audit.logged_micro,
            "logged_usd": usd(audit.logged_micro),
        },
        "by_tier": _rows(audit.by_tier, requests, routed),
        "by_model": _rows(audit.by_model, requests, routed),
        "by_rule": _rows(audit.by_rule, requests, routed),
        "changes": None,
        "errors": {
            "count": audit.errors,
            "by_kind": dict(sorted(audit.error_kinds.items())),
            "first": [{"line": line, "reason": reason} for line, reason in audit.first_errors],
        },
    }
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


def _signed_usd(micro: int) -> str:
    return ("+$" if micro >= 0 else "-$") + usd(abs(micro), 4)


def _table(title: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    head = f"{title:<28} {'requests':>9} {'share':>6} {'prompt tok':>12} {'compl tok':>11}"
    head += f" {'routed $':>11} {'baseline $':>11} {'saved':>6}"
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        saved = _ratio(r["baseline_micro_usd"] - r["routed_micro_usd"], r["baseline_micro_usd"])
        lines.append(
            f"{name[:28]:<28} {r['requests']:>9,} {r['share']:>6.1%} {r['prompt_tokens']:>12,}"
            f" {r['completion_tokens']:>11,} {usd(r['routed_micro_usd'], 4):>11}"
            f" {usd(r['baseline_micro_usd'], 4):>11} {saved:>6.1%}"
        )
    return lines


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
