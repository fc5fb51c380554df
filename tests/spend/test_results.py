"""Results per tier / rule / model / arm / key in the spend ledger: exact sums on every store.

The mix below (seven requests) is worked out by hand in `EXPECTED`; each store backend (memory,
SQLite, DynamoDB on moto) and a sharded ledger must report exactly it.
"""

from __future__ import annotations

from typing import Any

import pytest
from tier_router.request_line import Outcome, RequestLine
from tier_router.spend.counters import SpendLedger, field_name, summarize
from tier_router.spend.results import RequestResult, Tally
from tier_router.store.base import Store

from tests.support.clock import FakeClock, at
from tests.support.stores import Observing


def line(**fields: Any) -> RequestLine:
    made = RequestLine("r", path="/v1/chat/completions", status=200)
    for name, value in fields.items():
        setattr(made, name, value)
    return made


ESCALATION = {
    "tier": "budget",
    "model": "small",
    "provider": "p",
    "validator": "json",
    "reason": "not JSON",
    "to": "standard",
    "cost_micro_usd": 80,
    "prompt_tokens": 10,
    "completion_tokens": 20,
    "attempts": [],
}

# (request line, cost charged, cache hit)
MIX: list[tuple[RequestLine, int, bool]] = [
    # 1. a plain answer on budget, in the control arm: a success
    (
        line(
            tier="budget",
            rule="short",
            key="team-a",
            model="small",
            experiment="cheap-chat",
            arm="control",
            outcome=Outcome.OK,
            latency_ms=50.4,
        ),
        100,
        False,
    ),
    # 2. budget's answer (small, 80 µ$) failed validation; standard (medium) answered: 500 µ$ in all
    (
        line(
            tier="standard",
            escalated_from="budget",
            escalations=[ESCALATION],
            cascade="premium",
            rule="short",
            key="team-a",
            model="medium",
            experiment="cheap-chat",
            arm="cascade",
            outcome=Outcome.OK,
            latency_ms=899.6,
        ),
        500,
        False,
    ),
    # 3. every candidate failed: an error, no model
    (line(tier="budget", rule="default", key="team-b", outcome=Outcome.FAILED, latency_ms=30), 0, False),
    # 4. a cache hit: a success at no cost
    (
        line(
            tier="standard",
            rule="default",
            key="team-b",
            model="medium",
            outcome=Outcome.CACHE_HIT,
            latency_ms=3.2,
        ),
        0,
        True,
    ),
    # 5. the stream broke after content: an error, paid
    (
        line(
            tier="premium",
            rule="hard",
            key="team-a",
            model="large",
            outcome=Outcome.STREAM_INTERRUPTED,
            latency_ms=400,
        ),
        250,
        False,
    ),
    # 6. served although its validation failed (nothing left to escalate to): not a success
    (
        line(
            tier="premium",
            rule="hard",
            key="team-a",
            model="large",
            outcome=Outcome.OK,
            validation="json: not JSON",
            latency_ms=200,
        ),
        300,
        False,
    ),
    # 7. the provider said it was the client's fault: neither an error nor a success
    (
        line(
            tier="budget",
            rule="short",
            key="team-b",
            model="small",
            outcome=Outcome.CLIENT_ERROR,
            latency_ms=20,
        ),
        0,
        False,
    ),
]

# dimension -> value -> (requests, cost, latency sum, errors, escalations, successes)
EXPECTED: dict[str, dict[str, tuple[int, int, int, int, int, int]]] = {
    "tier": {  # the decided tier: request 2 counts on budget
        "budget": (4, 600, 50 + 900 + 30 + 20, 1, 1, 1),
        "standard": (1, 0, 3, 0, 0, 1),
        "premium": (2, 550, 600, 1, 0, 0),
    },
    "rule": {
        "short": (3, 600, 970, 0, 1, 1),
        "default": (2, 0, 33, 1, 0, 1),
        "hard": (2, 550, 600, 1, 0, 0),
    },
    "key": {
        "team-a": (4, 1150, 50 + 900 + 400 + 200, 1, 1, 1),
        "team-b": (3, 0, 53, 1, 0, 1),
    },
    "arm": {
        "cheap-chat/control": (1, 100, 50, 0, 0, 1),
        "cheap-chat/cascade": (1, 500, 900, 0, 1, 0),
    },
    "model": {  # small: requests 1 and 7 plus request 2's escalated answer (its 80 µ$)
        "small": (3, 180, 50 + 900 + 20, 0, 1, 1),
        "medium": (2, 420, 903, 0, 0, 1),  # request 2's final answer: 500 - 80
        "large": (2, 550, 600, 1, 0, 0),
    },
}


def counts(tally: Tally) -> tuple[int, int, int, int, int, int]:
    return (tally.requests, tally.cost, tally.latency_ms, tally.errors, tally.escalations, tally.successes)


async def record_mix(ledger: SpendLedger) -> None:
    for request, cost, cache_hit in MIX:
        await ledger.record(
            cost=cost,
            tier=request.tier,
            model=request.model,
            rule=request.rule,
            router_key=request.key,
            cache_hit=cache_hit,
            result=RequestResult.of(request, cost=cost),
        )


@pytest.mark.anyio
@pytest.mark.parametrize("shards", [1, 3])
async def test_results_sum_exactly(store: Store, clock: FakeClock, shards: int) -> None:
    clock.now = at(2026, 11, 23, 10)
    ledger = SpendLedger(store, clock=clock, shards=shards)
    await record_mix(ledger)
    report = await ledger.today()
    assert (report.total, report.requests, report.cache_hits) == (1150, 7, 1)
    assert {
        dim: {name: counts(t) for name, t in values.items()} for dim, values in report.results.items()
    } == (EXPECTED)
    # the cost breakdowns are as before; the models' costs add up to the total
    assert report.by_tier == {"budget": 600, "premium": 550}
    assert report.by_model == {"small": 180, "medium": 420, "large": 550}
    assert sum(report.by_model.values()) == report.total

    shown = report.as_dict()["results"]
    assert list(shown) == ["tier", "rule", "model", "arm", "key"]
    assert list(shown["tier"]) == ["budget", "premium", "standard"]  # dearest first
    assert shown["tier"]["budget"] == {
        "requests": 4,
        "cost_usd": "0.000600",
        "avg_latency_ms": 250.0,  # 1000 / 4
        "error_rate": 0.25,
        "escalation_rate": 0.25,
        "success_rate": 0.25,
        "cost_per_success_usd": "0.000600",  # all 600 µ$ of budget's requests / 1 success
    }
    assert shown["model"]["medium"]["cost_per_success_usd"] == "0.000420"
    assert shown["tier"]["premium"]["cost_per_success_usd"] is None  # no success
    assert shown["tier"]["premium"]["error_rate"] == 0.5
    assert shown["rule"]["default"]["avg_latency_ms"] == 16.5


@pytest.mark.anyio
async def test_still_one_write_per_request() -> None:
    from tier_router.store.memory import MemoryStore

    observed = Observing(MemoryStore())
    ledger = SpendLedger(observed)
    await ledger.layouts.pinned(ledger.today_key())  # once per day and process (spend.layout)
    observed.calls.clear()
    await record_mix(ledger)
    assert observed.calls == {"add": len(MIX)}


def test_deltas_are_small_and_safe() -> None:
    request, cost, _ = MIX[1]
    deltas = SpendLedger.deltas(
        cost=cost,
        tier=None,
        model=None,
        rule=None,
        router_key=None,
        result=RequestResult.of(request, cost=cost),
    )
    assert deltas == {
        "requests": 1,
        "total": 500,
        "tier.budget": 500,
        "tier_n.budget": 1,
        "tier_ms.budget": 900,
        "tier_esc.budget": 1,
        "rule.short": 500,
        "rule_n.short": 1,
        "rule_ms.short": 900,
        "rule_esc.short": 1,
        "key.team-a": 500,
        "key_n.team-a": 1,
        "key_ms.team-a": 900,
        "key_esc.team-a": 1,
        "arm.cheap-chat%2Fcascade": 500,
        "arm_n.cheap-chat%2Fcascade": 1,
        "arm_ms.cheap-chat%2Fcascade": 900,
        "arm_esc.cheap-chat%2Fcascade": 1,
        "model.small": 80,
        "model_n.small": 1,
        "model_ms.small": 900,
        "model_esc.small": 1,
        "model.medium": 420,
        "model_n.medium": 1,
        "model_ms.medium": 900,
        # the escalated answer's usage (the final answer's line has none): on its model and the rule
        "model_use.small": 1,
        "model_in.small": 10,
        "model_out.small": 20,
        "rule_use.short": 1,
        "rule_in.short": 10,
        "rule_out.short": 20,
    }  # no zero deltas: errors, successes and cached tokens are absent, not 0


def test_old_items_report_cost_without_results() -> None:
    """A day item written before results were counted: costs as before, results with their
    cost and no counts (rates null), and an item written by both still sums."""
    old = {"total": 700, "requests": 3, "cache_hits": 0, "tier.budget": 200, "tier.premium": 500}
    new = {
        "total": 10,
        "requests": 1,
        field_name("tier", "budget"): 10,
        "tier_n.budget": 1,
        "tier_ok.budget": 1,
    }
    report = summarize("2026-11-23", [old, new])
    assert report.by_tier == {"budget": 210, "premium": 500}
    rows = report.as_dict()["results"]["tier"]
    assert rows["premium"] == {
        "requests": 0,
        "cost_usd": "0.000500",
        "avg_latency_ms": None,
        "error_rate": None,
        "escalation_rate": None,
        "success_rate": None,
        "cost_per_success_usd": None,
    }
    assert rows["budget"]["requests"] == 1
    assert rows["budget"]["success_rate"] == 1.0


def test_a_result_without_escalations_or_outcome() -> None:
    """Odd lines (a log is data): a cancelled request is neither error nor success; an
    escalation entry without a model or with a bad cost still counts where it can."""
    odd = line(tier="t", rule="r", escalated_from="t", escalations=[{"cost_micro_usd": "x"}, {"model": "m"}])
    result = RequestResult.of(odd, cost=5)
    assert (result.error, result.success, result.escalated) == (False, False, True)
    assert [(a.model, a.cost) for a in result.escalated_answers] == [("m", 0)]


def test_bytes_per_distinct_value() -> None:
    """The counters module's size note: a 20-character key id costs ≤ 202 bytes of item a day
    (DynamoDB: a field is its name's bytes + 1 byte per 2 significant digits + 1), with
    every count large (a day of heavy traffic) and all six fields present."""
    key = "k" * 20
    request = line(tier="t", rule="r", key=key, model="m", outcome=Outcome.FAILED, latency_ms=999_999.0)
    deltas = SpendLedger.deltas(
        cost=12_345_678_901,
        tier=None,
        model=None,
        rule=None,
        router_key=None,
        result=RequestResult.of(request, cost=12_345_678_901),
    )
    fields = [name for name in deltas if name.split(".", 1)[0].startswith("key")]
    assert len(fields) == 4  # cost, requests, latency, errors: escalations and successes were 0
    names = sum(len(n.encode()) for n in fields) + len("key_esc.") + len("key_ok.") + 2 * len(key)
    assert names == 6 * len(key) + 40
    numbers = 6 * (-(-11 // 2) + 1)  # even if every count had 11 digits
    assert names + numbers == 6 * len(key) + 82 == 202


def test_bytes_per_model_value() -> None:
    """The size note for a model (or rule): with tokens, up to twelve fields — a 20-character
    model name costs at most 12 × 20 + 112 bytes of names and 12 × 7 of numbers (every count up
    to 11 digits) = 436 bytes a day; a rule's names are 12 bytes shorter."""
    model = "m" * 20
    request = line(
        tier="t",
        rule="r" * 20,
        key="k",
        model=model,
        outcome=Outcome.STREAM_INTERRUPTED,  # an error (a success is the other of the two)
        escalations=[{"model": model, "cost_micro_usd": 1, "prompt_tokens": 1, "completion_tokens": 1}],
        latency_ms=999_999.0,
        prompt_tokens=99_999_999_999,
        completion_tokens=99_999_999_999,
        cached_tokens=99_999_999_999,
        cache_savings_micro_usd=99_999_999_999,
    )
    deltas = SpendLedger.deltas(
        cost=12_345_678_901,
        tier=None,
        model=None,
        rule=None,
        router_key=None,
        result=RequestResult.of(request, cost=12_345_678_901),
    )
    fields = [name for name in deltas if name.split(".", 1)[0].startswith("model")]
    missing = ["model_ok." + model]  # errors and successes are exclusive in one request
    assert len(fields) == 11
    names = sum(len(n.encode()) for n in [*fields, *missing])
    assert names == 12 * len(model) + 112
    numbers = 12 * (-(-11 // 2) + 1)
    assert names + numbers == 436
    rule_fields = [name for name in deltas if name.startswith("rule")]
    assert sum(len(n.encode()) for n in rule_fields) + len("rule_ok.") + 20 == 12 * 20 + 100
