"""Re-routing a request log: `Replayer` runs every line through the rules without calling any
provider and counts it in an `Audit`; `replay` does that for one log file and returns the report.

Requested model: the logged `model` when the rules know it (a tier, model or alias), else
`auto` — a log from before the router names provider models the rules may not list. `--model`
forces one name for every request (e.g. `auto`: "route everything by the rules").

The router's own log lines carry no prompt text: they are priced as logged, not re-routed (see
`replay.log` for every accepted line); the settled ones also give the results per tier, rule,
model and arm (`spend.results`, as the ledger counts them), and the validated ones each tier's
escalation rate.

Cascades: a re-routed request whose new decision has a cascade (`decision.cascade`, with `.to`),
and a router line that was not validated on a tier the new rules put a cascade on
(`rules.cascades`), are counted per (tier, target): their cost as routed (the cheap answer) and
the same tokens priced on the target tier's first model (the escalated answer). The report
estimates cheap + rate × escalated with the tier's escalation rate measured from the log
(`report.cascade_estimates`). With `--against`, each re-routed request is also routed
by the older rules, and the requests that change tier are counted and listed.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from tier_router.replay.audit import Audit, add_row
from tier_router.replay.conversations import Turns
from tier_router.replay.log import Progress, ReplayError, body_of, headers_of, open_log, timestamp
from tier_router.replay.pricing import Rate, default_baseline, estimated_completion, token_count, usage_tokens
from tier_router.replay.quality import is_quality_line
from tier_router.replay.report import report
from tier_router.request_line import CHAT_PATHS, EMBEDDINGS, RequestLine
from tier_router.routing.engine import AUTO, Decision, Rules, UnknownModelError
from tier_router.routing.request import MAY_HOLD_SURROGATES, Chat, parse_chat
from tier_router.spend.results import RequestResult, add_request

SERVED_ERROR_STATUS = 400


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first['msg']}" if where else first["msg"]


class Replayer:
    """Routes and prices the lines of one log into `self.audit` (`run`), one line at a time."""

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
        self.tier_cascades: dict[str, Any] = dict(getattr(rules, "cascades", None) or {})
        """Tier -> its cascade in these rules (for router lines, which are not re-routed)."""
        self.audit = Audit()
        self.turns = self.audit.turns = Turns(rules, self.rates, against, self.old_rates)

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
                if is_quality_line(obj):
                    audit.quality.add(obj)
                elif obj.get("event") == "request" and "messages" not in obj:
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

    def _names_a_model(self, name: Any) -> bool:
        """Whether a logged request's `model` says which model served it: a model of the rules,
        or a name they do not know (a log from before the router); not a tier, alias or auto."""
        return (
            isinstance(name, str)
            and bool(name)
            and (name in self.rules.routes or name not in self.rules.targets)
        )

    def request_line(self, lineno: int, obj: dict[str, Any], *, text_checked: bool = False) -> None:
        audit = self.audit
        body = body_of(obj)
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
        headers = headers_of(obj) if "headers" in obj else {}
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
        ts = timestamp(obj.get("ts"))
        add_row(audit.by_tier, tier, prompt, completion, routed, base)
        add_row(audit.by_model, route.name, prompt, completion, routed, base)
        add_row(audit.by_rule, decision.label, prompt, completion, routed, base)
        cascade = getattr(decision, "cascade", None)
        if cascade is not None:
            self._cascade(tier, cascade.to, routed, prompt, completion, priced)
        served = None
        if counted is not None or "cost_micro_usd" in obj or "cost_usd" in obj:
            used, micro = self._logged(obj, response, counted)
            if used is None and self._names_a_model(logged_name):
                used = logged_name
            if counted is not None and used is not None:
                if micro is None and used in self.rates:  # the body's model: priced here
                    micro = self.rates[used].cost(*counted)
                audit.trend.add(ts, used, prompt, completion, micro)
                served = (used, usage)
        old = None
        if self.against is not None:
            old = self.compare(
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
        self.turns.request(obj, body, headers, ts, (decision, old), (prompt, completion), served)

    def _cascade(
        self, tier: str, to: str, cheap: int, prompt: int, completion: int, priced: Mapping[str, Any] | None
    ) -> None:
        """A request the new rules validate on `tier`: its escalated answer would be the same
        tokens on `to`'s first model (one hop: the target's own cascade is not followed)."""
        target = self.rules.tiers.get(to)
        if target:
            self.audit.cascade(tier, to, cheap, self.rates[target[0].name].cost(prompt, completion, priced))

    def _logged(
        self, obj: dict[str, Any], response: Any, counted: tuple[int, int, Mapping[str, Any] | None] | None
    ) -> tuple[str | None, int | None]:
        """The model the log says served the request (None: not logged), and what the request
        actually cost (µ$), when the log says (or lets us compute it)."""
        used = obj.get("model_used")
        if used is None and isinstance(response, dict):
            used = response.get("model")
        used = used if isinstance(used, str) and used else None
        micro = obj.get("cost_micro_usd")
        if type(micro) is not int or micro < 0:
            dollars = obj.get("cost_usd")
            micro = None
            if type(dollars) in (int, float) and math.isfinite(dollars) and dollars >= 0:
                micro = round(dollars * 1_000_000)
            elif counted is not None:
                rate = self.rates.get(used) if used is not None else None
                if rate is not None:
                    micro = rate.cost(*counted)
        if micro is not None:
            self.audit.logged_requests += 1
            self.audit.logged_micro += micro
        return used, micro

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
    ) -> Decision | None:
        """Route the request by the older rules too and count a change; the old decision
        (None: the old rules do not know the requested model)."""
        audit = self.audit
        assert self.against is not None
        old: Decision | None = None
        old_name = self._requested(self.against, logged_name)
        if old_name != request.model:
            request = request.model_copy(update={"model": old_name})
        try:
            old = self.against.decide(request, headers)
            old_tier, old_rule = old.tier or "-", old.label
            old_routed = self.old_rates[old.candidates[0].name].cost(prompt, completion, priced)
        except UnknownModelError:
            old, old_tier, old_rule, old_routed = None, "(unknown model)", "-", 0
        audit.compared += 1
        audit.old_routed_micro += old_routed
        audit.new_routed_micro += routed
        if old_tier == tier:
            if old_rule != rule:
                audit.rule_changed += 1
            return old
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
        return old

    def router_line(self, lineno: int, obj: dict[str, Any]) -> None:
        """The router's own log line (`RequestLine`): priced as logged (no prompt text to
        re-route). Lines of other paths (status, health checks) are not requests to price."""
        line = RequestLine.read(obj)
        if line is None or (line.path and line.path not in CHAT_PATHS) or line.endpoint == EMBEDDINGS:
            return
        audit = self.audit
        audit.router_lines += 1
        if line.cost_micro_usd is not None and line.cost_micro_usd >= 0:  # settled: what the ledger counts
            add_request(audit.results, RequestResult.of(line, cost=line.cost_micro_usd))
        decided = line.escalated_from or line.tier
        if line.cascade is not None and decided:
            audit.validated_line(decided, line.escalated_from is not None)
        model = line.model
        if model is None or line.status >= SERVED_ERROR_STATUS:
            audit.router_unserved += 1
            return
        features = line.features or {}
        prompt, completion = line.prompt_tokens, line.completion_tokens
        ts = timestamp(obj.get("ts"))
        logged = line.cost_micro_usd
        rate = self.rates.get(model)
        if prompt is not None and completion is not None:
            cost = logged if logged is not None and logged >= 0 else None
            if cost is None and rate is not None:
                cost = rate.cost(prompt, completion, None)
            audit.trend.add(ts, model, prompt, completion, cost)
        if prompt is None or completion is None:
            audit.estimated_usage += 1
            if prompt is None:
                prompt = token_count(features.get("conversation_tokens")) or 0
            if completion is None:
                completion = estimated_completion(token_count(features.get("max_tokens")))
        self.turns.router(obj, ts, model, prompt, completion)
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
        add_row(audit.by_tier, line.tier or "-", prompt, completion, routed, base)
        add_row(audit.by_model, model, prompt, completion, routed, base)
        add_row(audit.by_rule, line.rule or "-", prompt, completion, routed, base)
        cascade = self.tier_cascades.get(line.tier or "") if line.cascade is None else None
        if cascade is not None:  # not validated when logged; these rules would validate it
            self._cascade(line.tier or "-", cascade.to, routed, prompt, completion, None)


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
