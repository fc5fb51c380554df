"""What the feedback tests share: the rules (feedback on, an experiment so answers carry an arm),
two router keys, the client calls (openai SDK for chat, httpx for feedback), and a view of the
router's store from the test process (SQLite file or DynamoDB table) to read facts and the day's
quality item, or to plant a fact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import openai
from tier_router.aws.sigv4 import Credentials
from tier_router.quality.counts import item_key, summarize
from tier_router.quality.facts import Fact, fact_key
from tier_router.spend.counters import day_key
from tier_router.store.base import Store, Value
from tier_router.store.dynamodb import DynamoDBStore
from tier_router.store.sqlite import SQLiteStore

from tests.support.answer_script import answer_rules
from tests.support.clients import wait_until
from tests.support.moto_server import FAKE_ENV
from tests.support.router_process import REQUEST_ID
from tests.support.stack import table_of

T = TypeVar("T")
KEYS = {"alice": "rk-feedback-alice-000001", "bob": "rk-feedback-bob-0000002"}
API_KEYS = ",".join(f"{name}={secret}" for name, secret in KEYS.items())
WINDOW_DAYS = 2
SDK_TIMEOUT_S = 20.0


def rules(url: str, *, feedback: bool = True) -> dict[str, Any]:
    """Short prompts: the `treated` rule (tier standard) in arm `exp/treat`, else `short` (budget,
    whose JSON answers a cascade checks, escalating to premium); every short request is exposed
    to the experiment, so each answer has an arm."""
    return answer_rules(
        url,
        tiers={
            "budget": {"models": ["cheap"], "cascade": {"to": "premium", "on": ["json"]}},
            "standard": ["mid"],
            "premium": ["good"],
        },
        experiments={"exp": {"arms": {"control": 50, "treat": 50}}},
        rules=[
            {
                "name": "treated",
                "arm": "exp/treat",
                "tier": "standard",
                "when": {"last_user_tokens": {"max": 25}},
            },
            {"name": "short", "tier": "budget", "when": {"last_user_tokens": {"max": 25}}},
        ],
        quality={"feedback": {"enabled": feedback, "window_days": WINDOW_DAYS}},
    )


@dataclass(frozen=True)
class Answered:
    """A chat request the router answered: its id and where it went (from the headers)."""

    request_id: str
    tier: str
    rule: str
    model: str
    arm: str

    def dims(self) -> dict[str, str]:
        return {"tier": self.tier, "rule": self.rule, "model": self.model, "arm": self.arm}


def chat(
    url: str, key: str | None, script: str, *, user: str = "u1", stream: bool = False, **fields: Any
) -> Answered:
    """One chat request through the openai SDK (`[script=...]` picks the fake's answer)."""
    client = openai.OpenAI(base_url=url + "/v1", api_key=key or "none", max_retries=0, timeout=SDK_TIMEOUT_S)
    messages: Any = [{"role": "user", "content": f"hi [script={script}]"}]
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model="auto", messages=messages, user=user, stream=True, **fields
        ) as response:
            list(response.parse())
            headers = response.headers
    else:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages, user=user, **fields
        )
        raw.parse()
        headers = raw.headers
    return Answered(
        headers[REQUEST_ID],
        headers["x-router-tier"],
        headers["x-router-rule"],
        headers["x-router-model"],
        f"{headers['x-router-experiment']}/{headers['x-router-arm']}",
    )


def post(url: str, key: str | None, body: Any, **options: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(url + "/v1/feedback", json=body, headers=headers, timeout=SDK_TIMEOUT_S, **options)


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


class StoreView:
    """The router's store, read and written from the test process (each call its own loop)."""

    def __init__(self, open_store: Callable[[], Store]) -> None:
        self.open_store = open_store

    def _run(self, use: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
        async def run() -> T:
            store = self.open_store()
            try:
                return await use(store)
            finally:
                await store.aclose()

        return asyncio.run(run())

    def item(self, key: str) -> Value | None:
        return self._run(lambda store: store.get(key))

    def put(self, key: str, value: Value, expires_at: float) -> None:
        self._run(lambda store: store.put(key, value, expires_at=expires_at))

    def fact(self, request_id: str) -> Value | None:
        return self.item(fact_key(request_id))

    def plant(self, request_id: str, fact: Fact, expires_at: float) -> None:
        self.put(fact_key(request_id), fact.item(), expires_at)

    def wait_for_fact(self, request_id: str) -> Value:
        """Facts are kept once the answer went out (after the response): wait for them."""
        wait_until(lambda: self.fact(request_id) is not None, 10, f"the facts of {request_id}")
        item = self.fact(request_id)
        assert item is not None
        return item

    def feedback(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Today's feedback per (dimension, value): (count, scores summed in thousandths)."""
        day = day_key(time.time())
        quality = summarize(day, [self.item(item_key(day)) or {}])
        assert quality.results is not None
        return {
            (dim, name): (tally.feedback, tally.feedback_milli)
            for dim, values in quality.results.items()
            for name, tally in values.items()
            if tally.feedback
        }


def counted(before: dict[tuple[str, str], tuple[int, int]], after: dict[tuple[str, str], tuple[int, int]]):
    """What changed between two `StoreView.feedback` readings (zero changes left out)."""
    out = {}
    for slot in after.keys() | before.keys():
        n0, s0 = before.get(slot, (0, 0))
        n1, s1 = after.get(slot, (0, 0))
        if (n1 - n0, s1 - s0) != (0, 0):
            out[slot] = (n1 - n0, s1 - s0)
    return out


def expected(answered: Answered, milli: int, times: int = 1) -> dict[tuple[str, str], tuple[int, int]]:
    return {(dim, name): (times, milli * times) for dim, name in answered.dims().items()}


def sqlite_view(store_url: str) -> StoreView:
    path = store_url.removeprefix("sqlite:///")
    return StoreView(lambda: SQLiteStore(path))


def dynamodb_view(store_url: str, endpoint: str) -> StoreView:
    credentials = Credentials(
        FAKE_ENV["AWS_ACCESS_KEY_ID"], FAKE_ENV["AWS_SECRET_ACCESS_KEY"], FAKE_ENV["AWS_SESSION_TOKEN"]
    )
    table = table_of(store_url)
    return StoreView(
        lambda: DynamoDBStore(table, endpoint=endpoint, region="us-east-1", credentials=lambda: credentials)
    )
