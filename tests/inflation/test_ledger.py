"""Tokens in the daily ledger, per model and per rule: exact sums on every store (memory, SQLite,
a region's view, DynamoDB on moto), sharded or not; still one write per request; no zero
fields; tiers, keys and arms count no tokens; and old and new readers read each other's items.

The mix (five requests) is worked out by hand in `EXPECTED`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from tier_router.request_line import Outcome, RequestLine
from tier_router.spend import counters
from tier_router.spend.counters import SpendLedger, summarize
from tier_router.spend.results import RequestResult, Tally
from tier_router.spend.trend import row
from tier_router.store.base import Store

from tests.support.clock import FakeClock, at
from tests.support.stores import Observing


def line(**fields: Any) -> RequestLine:
    made = RequestLine("r", path="/v1/chat/completions", status=200, key="team-a", tier="t", arm=None)
    for name, value in fields.items():
        setattr(made, name, value)
    return made


SMALL_ANSWER = {"model": "small", "cost_micro_usd": 40, "prompt_tokens": 10, "completion_tokens": 20}

# (request line, cost charged)
MIX: list[tuple[RequestLine, int]] = [
    # 1. a 50,000-token prefix read from the cache
    (
        line(
            model="claude",
            rule="deep",
            outcome=Outcome.OK,
            prompt_tokens=50_100,
            completion_tokens=40,
            cached_tokens=50_000,
            cache_savings_micro_usd=135_000,
        ),
        15_900,
    ),
    # 2. the same model, nothing cached
    (line(model="claude", rule="deep", outcome=Outcome.OK, prompt_tokens=200, completion_tokens=60), 1_500),
    # 3. small's answer failed validation (its usage in the escalation); medium answered, partly cached
    (
        line(
            model="medium",
            rule="short",
            outcome=Outcome.OK,
            escalated_from="t",
            escalations=[SMALL_ANSWER],
            prompt_tokens=30,
            completion_tokens=50,
            cached_tokens=10,
            cache_savings_micro_usd=5,
        ),
        300,
    ),
    # 4. a response-cache hit: a request, no usage
    (line(model="medium", rule="default", outcome=Outcome.CACHE_HIT), 0),
    # 5. every candidate failed: no model, no usage
    (line(rule="short", outcome=Outcome.FAILED), 0),
]

# dimension -> value -> (requests, metered, input, output, cached, cached requests, savings)
EXPECTED: dict[str, dict[str, tuple[int, ...]]] = {
    "model": {
        "claude": (2, 2, 50_300, 100, 50_000, 1, 135_000),
        "small": (1, 1, 10, 20, 0, 0, 0),
        "medium": (2, 1, 30, 50, 10, 1, 5),
    },
    "rule": {  # a rule counts every answer's tokens: request 3's small and medium ones
        "deep": (2, 2, 50_300, 100, 50_000, 1, 135_000),
        "short": (2, 1, 40, 70, 10, 1, 5),
        "default": (1, 0, 0, 0, 0, 0, 0),
    },
}


def tokens(t: Tally) -> tuple[int, ...]:
    return (
        t.requests,
        t.metered,
        t.input_tokens,
        t.output_tokens,
        t.cached_tokens,
        t.cached_requests,
        t.savings,
    )


async def record_mix(ledger: SpendLedger) -> None:
    for request, cost in MIX:
        await ledger.record(
            cost=cost,
            tier=request.tier,
            model=request.model,
            rule=request.rule,
            router_key=request.key,
            result=RequestResult.of(request, cost=cost),
        )


@pytest.mark.anyio
@pytest.mark.parametrize("shards", [1, 3])
async def test_tokens_sum_exactly_on_every_store(store: Store, clock: FakeClock, shards: int) -> None:
    clock.now = at(2026, 12, 7, 10)
    ledger = SpendLedger(store, clock=clock, shards=shards)
    await record_mix(ledger)
    report = await ledger.today()
    for dim, values in EXPECTED.items():
        assert {name: tokens(t) for name, t in report.results[dim].items()} == values, dim
    for dim in ("tier", "key"):  # counted, but without tokens
        assert all(tokens(t)[1:] == (0,) * 6 for t in report.results[dim].values())
    items = await store.get_many(ledger.item_keys(ledger.today_key()))
    written = {name for item in items.values() for name in item}
    token_kinds = ("_use.", "_in.", "_out.", "_cin.", "_chit.", "_sav.")
    assert {n.split("_")[0] for n in written if any(k in n for k in token_kinds)} == {"model", "rule"}
    assert "model_cin.small" not in written  # no zero deltas: small had no cached reads
    assert "rule_use.default" not in written


@pytest.mark.anyio
async def test_still_one_write_per_request() -> None:
    from tier_router.store.memory import MemoryStore

    observed = Observing(MemoryStore())
    ledger = SpendLedger(observed)
    await ledger.layouts.pinned(ledger.today_key())
    observed.calls.clear()
    await record_mix(ledger)
    assert observed.calls == {"add": len(MIX)}


def test_the_deltas_of_one_cached_request() -> None:
    request, cost = MIX[0]
    deltas = SpendLedger.deltas(
        cost=cost,
        tier=None,
        model=None,
        rule=None,
        router_key=None,
        result=RequestResult.of(request, cost=cost),
    )
    assert {k: v for k, v in deltas.items() if k.startswith("model")} == {
        "model.claude": 15_900,
        "model_n.claude": 1,
        "model_ok.claude": 1,
        "model_use.claude": 1,
        "model_in.claude": 50_100,
        "model_out.claude": 40,
        "model_cin.claude": 50_000,
        "model_chit.claude": 1,
        "model_sav.claude": 135_000,
    }
    assert not [
        k for k in deltas if k.startswith(("tier_", "key_")) and k.split(".")[0].endswith(("in", "out"))
    ]


def test_an_old_day_item_reads_as_requests_without_tokens() -> None:
    """Written before tokens were counted (results only) or before results were (cost only):
    requests and cost as before, no tokens — per-request token figures null, not 0 — and a day
    written partly by each sums."""
    cost_only = {"total": 700, "requests": 3, "model.claude": 700}
    results_only = {
        "total": 100,
        "requests": 1,
        "model.claude": 100,
        "model_n.claude": 1,
        "model_ok.claude": 1,
    }
    newer = {
        "total": 50,
        "requests": 1,
        "model.claude": 50,
        "model_n.claude": 1,
        "model_use.claude": 1,
        "model_in.claude": 400,
        "model_out.claude": 80,
    }
    old = summarize("2026-11-23", [cost_only, results_only]).results["model"]["claude"]
    assert tokens(old) == (1, 0, 0, 0, 0, 0, 0)
    assert (old.cost, row(old)["output_tokens_per_request"], row(old)["cached_share"]) == (800, None, None)
    both = summarize("2026-11-23", [cost_only, results_only, newer]).results["model"]["claude"]
    assert tokens(both) == (2, 1, 400, 80, 0, 0, 0)
    assert row(both)["output_tokens_per_request"] == 80.0  # over the request that reported usage
    assert row(both)["cost_per_request_usd"] == "0.000425"  # 850 µ$ over 2 requests


def test_a_reader_that_does_not_know_the_token_kinds_reads_new_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """An older router's reader is this one with the older table of kinds: it skips the token
    fields and reads everything else as before."""
    deltas: dict[str, int] = {}
    for request, cost in MIX:
        for name, value in SpendLedger.deltas(
            cost=cost,
            tier=None,
            model=None,
            rule=None,
            router_key=None,
            result=RequestResult.of(request, cost=cost),
        ).items():
            deltas[name] = deltas.get(name, 0) + value
    new = summarize("2026-12-07", [deltas])
    older = {k: counters.METRIC_KINDS[k] for k in ("n", "ms", "err", "esc", "ok")}
    monkeypatch.setattr(counters, "METRIC_KINDS", older)
    old = summarize("2026-12-07", [deltas])
    assert (old.total, old.requests, old.by_model) == (new.total, new.requests, new.by_model)
    for dim, values in new.results.items():
        for name, t in values.items():
            o = old.results[dim][name]
            assert (o.requests, o.cost, o.latency_ms, o.errors, o.escalations, o.successes) == (
                t.requests,
                t.cost,
                t.latency_ms,
                t.errors,
                t.escalations,
                t.successes,
            )
            assert tokens(o)[1:] == (0,) * 6
    assert tokens(new.results["model"]["claude"]) == EXPECTED["model"]["claude"]


def test_a_log_line_gives_the_same_tokens_as_the_live_line() -> None:
    """`replay` reads lines back (`RequestLine.read`): the token fields survive the round trip,
    and a line without cached reads does not mention them."""
    request, cost = MIX[0]
    request = replace(request, cost_micro_usd=cost)
    record = request.record()
    assert (record["cached_tokens"], record["cache_savings_micro_usd"]) == (50_000, 135_000)
    back = RequestLine.read(record)
    assert back is not None
    assert RequestResult.of(back, cost=cost).tokens == RequestResult.of(request, cost=cost).tokens
    plain = MIX[1][0].record()
    assert "cached_tokens" not in plain
    assert "cache_savings_micro_usd" not in plain
