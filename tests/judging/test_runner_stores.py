"""`Judging.run` on every store (memory, SQLite, DynamoDB on moto): a sample as the Lambda
event carries it is judged, counted in `quality:<day>` on its dimensions, and its calls are
settled on the judging's own budget item `judge:<day>` — also when judgements run at once."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tier_router.gateway import Gateway
from tier_router.provider_keys import KeySource
from tier_router.quality.counts import item_key, summarize
from tier_router.quality.sample import Sample
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings
from tier_router.spend.counters import day_key
from tier_router.store.base import Store
from tier_router.telemetry import AccessLog

pytestmark = pytest.mark.anyio

PRICES = {"cheap": (1, 4), "good": (10, 40), "judge": (3, 12)}
USAGE = {"cheap": (0, 0), "good": (50, 100), "judge": (400, 30)}


def rules() -> dict[str, Any]:
    return {
        "version": 1,
        "providers": {"p": {"kind": "openai", "base_url": "http://scripted/v1", "api_key_env": "P_KEY"}},
        "models": {
            m: {"provider": "p", "id": m, "price": {"input": i, "output": o}} for m, (i, o) in PRICES.items()
        },
        "tiers": {"budget": ["cheap"], "premium": ["good"]},
        "default_tier": "budget",
        "quality": {"sample": 1, "reference": "premium", "judge": {"model": "judge"}, "budget_usd": 5},
    }


class Scripted(httpx.AsyncBaseTransport):
    """The reference answers "GOOD"; the judge prefers the served answer ("CHEAP") shown as A,
    and calls it a tie shown as B: a win either way."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(await request.aread())
        model = body["model"]
        if model == "judge":
            prompt = body["messages"][-1]["content"]
            served_first = "<answer_A>\nCHEAP" in prompt  # served as A: preferred; as B: a tie
            text = json.dumps(
                {"a": 9, "b": 4, "better": "A"} if served_first else {"a": 4, "b": 9, "better": "tie"}
            )
        else:
            text = "GOOD"
        prompt_tokens, completion_tokens = USAGE[model]
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return httpx.Response(
            200, json={"id": "x", "object": "chat.completion", "choices": [choice], "usage": usage}
        )


def cost(model: str) -> int:
    (i, o), (p, c) = PRICES[model], USAGE[model]
    return i * p + o * c


async def test_a_judgement_is_counted_and_settled_on_every_store(store: Store, tmp_path: Path) -> None:
    client = httpx.AsyncClient(transport=Scripted())
    gateway = Gateway(
        Settings(rules_path=tmp_path / "unused.yaml"),
        rules=parse_rules(rules(), "test.yaml"),
        client=client,
        keys=KeySource({"P_KEY": "p-key-for-tests"}),
        store=store,
    )
    judging = gateway.quality.judging
    assert judging is not None
    out = io.StringIO()
    judging.access_log = AccessLog(out)
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    samples = [
        Sample(f"r{i}", body, "CHEAP", "budget", "premium", "default", "cheap", "exp/a", "k", cost=7)
        for i in range(5)
    ]
    try:
        await asyncio.gather(
            *(judging.run(Sample.from_event(json.loads(json.dumps(s.as_event())))) for s in samples)
        )
    finally:
        await client.aclose()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["verdict"] for line in lines] == ["win"] * 5
    day = day_key(time.time())
    item = await store.get(item_key(day))
    assert item is not None
    quality = summarize(day, [item])
    each = cost("good") + 2 * cost("judge")
    assert (quality.judged, quality.judge_failed, quality.judge_skipped, quality.judge_cost) == (
        5,
        0,
        0,
        5 * each,
    )
    assert quality.results is not None
    for dim, value in (("tier", "budget"), ("rule", "default"), ("model", "cheap"), ("arm", "exp/a")):
        tally = quality.results[dim][value]
        assert (tally.wins, tally.ties, tally.losses) == (5, 0, 0)
        assert (tally.score_milli, tally.reference_milli) == (5 * 900, 5 * 400)
        assert tally.saved == 5 * (cost("good") - 7)
    budget = await store.get(f"judge:{day}")
    assert budget is not None
    assert budget["committed"] == budget["spent"] == 5 * each  # every reservation settled to its cost
    assert not [name for name in budget if name.startswith("h.")]  # no hold left


def sampled_exchange(gateway: Gateway, text: str = "hi") -> Any:
    """A request routed, sampled at admission (the rate is 1) and answered "CHEAP"."""
    from tier_router.request_line import Outcome
    from tier_router.routing.request import parse_chat

    body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
    exchange = gateway.lifecycle.begin({"method": "POST", "path": "/v1/chat/completions"})
    decision = gateway.rules.decide(parse_chat(body))
    exchange.routed(decision)
    exchange.sampled = gateway.quality.judging.pick(decision, body)
    exchange.sampled.answer = "CHEAP"
    exchange.cost = 7
    exchange.ended(Outcome.OK, 200)
    return exchange


async def test_a_dispatched_sample_is_handed_over_and_a_failed_dispatch_is_a_failed_judgement(
    tmp_path: Path,
) -> None:
    """With a dispatch (Lambda's self-invocation), `submit` hands it the sample and judges
    nothing here; a dispatch that fails is logged and counted as a failed judgement."""
    from tier_router.store.memory import MemoryStore

    store = MemoryStore()
    gateway = Gateway(
        Settings(rules_path=tmp_path / "unused.yaml"),
        rules=parse_rules(rules(), "test.yaml"),
        client=httpx.AsyncClient(transport=Scripted()),
        keys=KeySource({"P_KEY": "p-key-for-tests"}),
        store=store,
    )
    judging = gateway.quality.judging
    assert judging is not None
    out = io.StringIO()
    judging.access_log = AccessLog(out)
    handed: list[Sample] = []

    async def dispatch(sample: Sample) -> None:
        handed.append(sample)
        if sample.body["messages"][0]["content"] == "too big":
            raise RuntimeError("the event is over 256 KB")

    judging.dispatch = dispatch
    judging.submit(sampled_exchange(gateway, "hello"))
    judging.submit(sampled_exchange(gateway, "too big"))
    await gateway.lifecycle.drainer.drain()
    await gateway.client.aclose()
    first = handed[0]
    assert (first.tier, first.reference, first.answer, first.rule, first.model, first.cost) == (
        "budget",
        "premium",
        "CHEAP",
        "default",
        None,  # nothing was forwarded in this test: no route
        7,
    )
    (line,) = [json.loads(line) for line in out.getvalue().splitlines()]  # only the failed dispatch
    assert line["error"] == "dispatch: the event is over 256 KB"
    assert line["verdict"] is None
    item = await store.get(item_key(day_key(time.time())))
    assert item == {"judge_failed": 1}
