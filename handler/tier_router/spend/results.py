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
successes. What counts as what:

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
from dataclasses import dataclass
from typing import Any

from tier_router.request_line import Outcome, RequestLine
from tier_router.spend.pricing import usd

DIMENSIONS = ("tier", "rule", "model", "arm", "key")
ERROR_OUTCOMES = frozenset({Outcome.FAILED, Outcome.STREAM_INTERRUPTED, Outcome.ERROR})
ANSWERED = frozenset({Outcome.OK, Outcome.CACHE_HIT})
METRICS = ("requests", "cost", "latency_ms", "errors", "escalations", "successes")


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

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.cost += other.cost
        self.latency_ms += other.latency_ms
        self.errors += other.errors
        self.escalations += other.escalations
        self.successes += other.successes

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
class Answer:
    """An answer that failed validation and was escalated: its model and its own cost."""

    model: str
    cost: int


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
        )

    def tallies(self) -> Iterator[tuple[str, str, Tally]]:
        """(dimension, value, what it adds) for every dimension value this request counts on."""
        whole = Tally(1, self.cost, self.latency_ms, int(self.error), int(self.escalated), int(self.success))
        for dim, name in (("tier", self.tier), ("rule", self.rule), ("key", self.key), ("arm", self.arm)):
            if name:
                yield dim, name, whole
        escalated_cost = 0
        for answer in self.escalated_answers:
            escalated_cost += answer.cost
            yield "model", answer.model, Tally(1, answer.cost, self.latency_ms, 0, 1, 0)
        if self.model:
            final = max(self.cost - escalated_cost, 0)
            yield "model", self.model, Tally(1, final, self.latency_ms, int(self.error), 0, int(self.success))


def _answers(escalations: list[Any]) -> Iterator[Answer]:
    """The escalated answers of a line (entries without a model name are skipped; a cost that
    is not a non-negative int counts as 0 — a log is data, not trusted input)."""
    for entry in escalations:
        if not isinstance(entry, Mapping):
            continue
        model, cost = entry.get("model"), entry.get("cost_micro_usd")
        if isinstance(model, str) and model:
            yield Answer(model, cost if type(cost) is int and cost >= 0 else 0)


def add_request(results: Results, result: RequestResult) -> None:
    """Count one request in running `results` (a replay)."""
    for dim, name, tally in result.tallies():
        values = results.setdefault(dim, {})
        values.setdefault(name, Tally()).add(tally)
