"""Results per tier, rule, key, arm and model: what requests cost, how fast and how well they went.

One settled request (`RequestResult.of(line, cost=...)`) counts on one value of each dimension
it has — `Tally`s the ledger adds to today's item and a replay adds up from a log:

    tier   the DECIDED tier (`escalated_from or tier`: an escalated request counts on the tier
           whose answer failed validation, with the whole cost, escalations included)
    rule   the decision's label (a rule's name, or "default" / "explicit")
    key    the router key
    arm    "<experiment>/<arm>" (the experiment may be "rollout:<rule>")
    model  every model that produced an answer: the final answer's model counts the request,
           its error or success and the cost left after the escalated answers'; each escalated
           answer's model counts the request, the escalation and that answer's own cost

Counted per value: requests, cost (µ$), latency (ms, end to end, the request's own on every
value it counts on — an escalated request's includes both answers), errors, escalations and
successes. On `model` and `rule` only, the tokens the provider's usage reported (the line's
`prompt_tokens`, `completion_tokens`, `cached_tokens`; a model counts its own answer's, a rule
every answer's), the requests whose usage had cached input and what the cache saved
(`cache_savings_micro_usd`), and the requests that reported usage at all (`metered`: the
denominator of tokens per request — a response-cache hit, a failure or a stream cut before
its usage count as requests, not as metered). What counts as what:

- error: the router failed the client — outcome `failed` (no candidate answered),
  `stream_interrupted` (the stream broke after content) or `error` (the router's own fault).
  `client_error` (a provider rejected the request as the client's fault), `client_gone` and
  `cancelled` are neither errors nor successes; refused requests are never settled.
- escalation: the request's answer failed validation and was sent on (`escalations`).
- success: answered (`ok` or `cache_hit`), not escalated, and the served answer did not fail
  validation (`validation` unset).

Rates in `row` are over requests; cost per success is the TOTAL cost of the value's requests
(failures and escalations included) divided by its successes, rounded to the µ$ — what one
good answer costs (null without a success).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tier_router.request_line import Outcome, RequestLine
from tier_router.spend.pricing import usd

DIMENSIONS = ("tier", "rule", "model", "arm", "key")
ERROR_OUTCOMES = frozenset({Outcome.FAILED, Outcome.STREAM_INTERRUPTED, Outcome.ERROR})
ANSWERED = frozenset({Outcome.OK, Outcome.CACHE_HIT})
METRICS = ("requests", "cost", "latency_ms", "errors", "escalations", "successes")
TOKEN_METRICS = ("metered", "input_tokens", "output_tokens", "cached_tokens", "cached_requests", "savings")
"""What `model` and `rule` values count besides `METRICS` (`Tally`)."""
TOKEN_DIMENSIONS = ("model", "rule")


@dataclass(slots=True)
class Tally:
    """One dimension value's counts (additive: shards, days and log lines sum)."""

    requests: int = 0
    cost: int = 0
    """Micro-dollars."""
    latency_ms: int = 0
    """The sum over requests, whole milliseconds."""
    errors: int = 0
    escalations: int = 0
    successes: int = 0
    metered: int = 0
    """Requests whose provider reported usage (the token counts' denominator)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    """Input tokens read from the provider's prompt cache (included in `input_tokens`)."""
    cached_requests: int = 0
    """Requests with cached input (`cached_tokens` > 0)."""
    savings: int = 0
    """Micro-dollars the cached input saved, rounded down (`pricing.cache_savings_micro_usd`)."""

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.cost += other.cost
        self.latency_ms += other.latency_ms
        self.errors += other.errors
        self.escalations += other.escalations
        self.successes += other.successes
        self.metered += other.metered
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cached_requests += other.cached_requests
        self.savings += other.savings

    def row(self) -> dict[str, Any]:
        """The status / replay row: rates rounded to 4 decimals; null without requests
        (a day item written before results were counted has cost only)."""
        n = self.requests

        def rate(count: int) -> float | None:
            return round(count / n, 4) if n else None

        return {
            "requests": n,
            "cost_usd": usd(self.cost),
            "avg_latency_ms": round(self.latency_ms / n, 1) if n else None,
            "error_rate": rate(self.errors),
            "escalation_rate": rate(self.escalations),
            "success_rate": rate(self.successes),
            "cost_per_success_usd": usd(round(self.cost / self.successes)) if self.successes else None,
        }


Results = dict[str, dict[str, Tally]]
"""dimension -> value -> its tally."""


def empty_results() -> Results:
    return {dim: {} for dim in DIMENSIONS}


def rows(results: Results) -> dict[str, dict[str, dict[str, Any]]]:
    """`results` for JSON: each dimension's rows, dearest first (then most requests, name)."""
    return {
        dim: {
            name: tally.row()
            for name, tally in sorted(values.items(), key=lambda kv: (-kv[1].cost, -kv[1].requests, kv[0]))
        }
        for dim, values in results.items()
    }


RESULTS_HEAD = (
    f"{'requests':>8} {'cost $':>11} {'avg ms':>8} {'errors':>7} {'escal.':>7} {'success':>7}"
    f" {'$/success':>11}"
)
"""The results columns: 65 characters, 98 with the name's 33."""


def table(title: str, shown: dict[str, dict[str, Any]]) -> list[str]:
    """One dimension's results: requests, cost, average latency, error / escalation / success
    rates and cost per success ("-" where not counted: a day written before results were)."""

    def cell(value: Any, width: int, form: str = "") -> str:
        return f"{'-' if value is None else format(value, form):>{width}}"

    out = [f"{title:<33}{RESULTS_HEAD}"]
    for name, row in shown.items():
        label = name if len(name) <= 30 else name[:29] + "~"
        out.append(
            f"  {label:<30} {cell(row.get('requests'), 8)} {cell(row.get('cost_usd'), 11)}"
            f" {cell(row.get('avg_latency_ms'), 8, '.1f')} {cell(row.get('error_rate'), 7, '.1%')}"
            f" {cell(row.get('escalation_rate'), 7, '.1%')} {cell(row.get('success_rate'), 7, '.1%')}"
            f" {cell(row.get('cost_per_success_usd'), 11)}"
        )
    return out


@dataclass(frozen=True, slots=True)
class Tokens:
    """One answer's usage as the ledger counts it (`Tally`'s token fields)."""

    input: int = 0
    output: int = 0
    cached: int = 0
    savings: int = 0
    """Micro-dollars, rounded down."""

    def tally(self, tally: Tally) -> Tally:
        """`tally` (one request's counts) with these tokens: a metered request."""
        tally.metered = 1
        tally.input_tokens, tally.output_tokens, tally.cached_tokens = self.input, self.output, self.cached
        tally.cached_requests = int(self.cached > 0)
        tally.savings = self.savings
        return tally

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.input + other.input,
            self.output + other.output,
            self.cached + other.cached,
            self.savings + other.savings,
        )

    @classmethod
    def of(cls, prompt: Any, completion: Any, cached: Any = None, savings: Any = None) -> Tokens | None:
        """From a line's or an escalation's fields; None when neither token count is there (no
        usage). A count that is not a non-negative int reads as 0 (a log is data)."""
        if _count(prompt) is None and _count(completion) is None:
            return None
        return cls(_count(prompt) or 0, _count(completion) or 0, _count(cached) or 0, _amount(savings))


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _amount(value: Any) -> int:
    return value if type(value) is int else 0


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer that failed validation and was escalated: its model, its own cost and tokens."""

    model: str
    cost: int
    tokens: Tokens | None = None


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One settled request, as the results count it (`of` reads it from its request line)."""

    cost: int
    """The whole request's, escalated answers included (what was charged)."""
    tier: str | None
    rule: str | None
    key: str | None
    arm: str | None
    model: str | None
    """The final answer's model."""
    latency_ms: int = 0
    error: bool = False
    escalated: bool = False
    success: bool = False
    escalated_answers: tuple[Answer, ...] = ()
    tokens: Tokens | None = None
    """The final answer's usage (None: it reported none)."""

    @classmethod
    def of(cls, line: RequestLine, *, cost: int, model: str | None = None) -> RequestResult:
        """`model`: the final answer's (the line's own is filled only when it is written)."""
        outcome = line.outcome or Outcome.CANCELLED
        answers = tuple(_answers(line.escalations))
        escalated = bool(line.escalations) or line.escalated_from is not None
        return cls(
            cost=cost,
            tier=line.escalated_from or line.tier,
            rule=line.rule,
            key=line.key,
            arm=line.arm_label,
            model=model or line.model,
            latency_ms=max(round(line.latency_ms), 0),
            error=outcome in ERROR_OUTCOMES,
            escalated=escalated,
            success=outcome in ANSWERED and not escalated and line.validation is None,
            escalated_answers=answers,
            tokens=Tokens.of(
                line.prompt_tokens, line.completion_tokens, line.cached_tokens, line.cache_savings_micro_usd
            ),
        )

    def tallies(self) -> Iterator[tuple[str, str, Tally]]:
        """(dimension, value, what it adds) for every dimension value this request counts on."""
        whole = Tally(1, self.cost, self.latency_ms, int(self.error), int(self.escalated), int(self.success))
        every = [a.tokens for a in self.escalated_answers if a.tokens is not None]
        every += [self.tokens] if self.tokens is not None else []
        rule = sum(every, Tokens()).tally(replace(whole)) if every else whole  # every answer's tokens
        for dim, name, tally in (
            ("tier", self.tier, whole),
            ("rule", self.rule, rule),
            ("key", self.key, whole),
            ("arm", self.arm, whole),
        ):
            if name:
                yield dim, name, tally
        escalated_cost = 0
        for answer in self.escalated_answers:
            escalated_cost += answer.cost
            tally = Tally(1, answer.cost, self.latency_ms, 0, 1, 0)
            yield "model", answer.model, tally if answer.tokens is None else answer.tokens.tally(tally)
        if self.model:
            final = max(self.cost - escalated_cost, 0)
            tally = Tally(1, final, self.latency_ms, int(self.error), 0, int(self.success))
            yield "model", self.model, tally if self.tokens is None else self.tokens.tally(tally)


def _answers(escalations: list[Any]) -> Iterator[Answer]:
    """The escalated answers of a line (entries without a model name are skipped; a cost that
    is not a non-negative int counts as 0 — a log is data, not trusted input)."""
    for entry in escalations:
        if not isinstance(entry, Mapping):
            continue
        model, cost = entry.get("model"), entry.get("cost_micro_usd")
        if isinstance(model, str) and model:
            tokens = Tokens.of(entry.get("prompt_tokens"), entry.get("completion_tokens"))
            yield Answer(model, cost if type(cost) is int and cost >= 0 else 0, tokens)


def add_request(results: Results, result: RequestResult) -> None:
    """Count one request in running `results` (a replay)."""
    for dim, name, tally in result.tallies():
        values = results.setdefault(dim, {})
        values.setdefault(name, Tally()).add(tally)
