"""Sticky conversations as real clients drive them: the async openai SDK in a tool loop, a stream
the client closes early, `n > 1`. A live router on the default configuration (SQLite store,
request log on), the fake providers on 127.0.0.1; tier `fast` = [model-a, model-b]."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conversations.test_sticky_wire import ROUTER_KEY, rules
from tests.support.clients import async_client
from tests.support.fake_providers import FakeProviders
from tests.support.router_app import app_settings, build_app, production_client, serve_in_thread
from tests.support.rules import KEYS

pytestmark = pytest.mark.anyio
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@contextlib.asynccontextmanager
async def live(fakes: FakeProviders, tmp_path: Path) -> AsyncIterator[openai.AsyncOpenAI]:
    settings = app_settings(store_url=f"sqlite:///{tmp_path / 'state.db'}", api_keys=(ROUTER_KEY,))
    app = build_app(rules(fakes), settings=settings, keys=KEYS, client=production_client())
    with serve_in_thread(app) as url:
        async with async_client(url, ROUTER_KEY, 15.0) as client:
            yield client


async def send(client: openai.AsyncOpenAI, messages: list[dict[str, Any]], **extra: Any) -> tuple[Any, str]:
    raw = await client.chat.completions.with_raw_response.create(model="auto", messages=messages, **extra)
    return raw.parse(), raw.headers["x-router-model"]


async def test_a_tool_loop_keeps_the_model_a_failover_moved_it_to(
    fakes: FakeProviders, tmp_path: Path
) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Oslo and Lima?"}]
    async with live(fakes, tmp_path) as client:
        answer, model = await send(client, messages, tools=[WEATHER])
        assert model == "model-a"
        models = [model]
        for step in range(3):  # run each tool call, send its result: the next turn of the loop
            message = answer.choices[0].message
            assert message.tool_calls, "the fake answers a tool call until it sees a result"
            messages.append(message.model_dump(exclude_none=True))
            messages.append({"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "12C"})
            messages.append({"role": "user", "content": f"And the next city? ({step})"})
            if step == 0:
                fakes.a.control(mode="status", status=503)  # model-a fails this step only
            answer, model = await send(client, messages, tools=[WEATHER])
            fakes.a.reset()
            models.append(model)
    assert models == ["model-a", "model-b", "model-b", "model-b"]


async def test_a_stream_the_client_closes_early_remembers_nothing(
    fakes: FakeProviders, tmp_path: Path
) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Hi"}]
    async with live(fakes, tmp_path) as client:
        answer, model = await send(client, messages)
        assert model == "model-a"
        messages += [
            {"role": "assistant", "content": answer.choices[0].message.content},
            {"role": "user", "content": "More"},
        ]
        fakes.a.control(mode="status", status=503)
        answer, model = await send(client, messages)
        assert model == "model-b"  # the conversation moved to model-b, and it is remembered
        fakes.a.control(mode="drip", drip_ms=200)  # a slow stream from model-a ...
        fakes.b.control(mode="status", status=503)  # ... which answers when model-b fails
        messages += [
            {"role": "assistant", "content": answer.choices[0].message.content},
            {"role": "user", "content": "Go"},
        ]
        stream = await client.chat.completions.create(model="auto", messages=messages, stream=True)
        async for _chunk in stream:
            break  # the client has what it wanted: it closes the stream mid-answer
        await stream.close()
        assert fakes.a.requests >= 1  # the closed stream was model-a's
        fakes.a.reset()
        fakes.b.reset()
        _, model = await send(client, [*messages[:-1], {"role": "user", "content": "Again"}])
    assert model == "model-b"  # the unfinished turn on model-a did not move the conversation


async def test_n_choices_turns_are_sticky(fakes: FakeProviders, tmp_path: Path) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Name a colour."}]
    async with live(fakes, tmp_path) as client:
        await send(client, messages, n=2)
        fakes.a.control(mode="status", status=503)
        _, model = await send(
            client,
            [*messages, {"role": "assistant", "content": "Red"}, {"role": "user", "content": "Another"}],
            n=3,
        )
        assert model == "model-b"
        fakes.a.reset()
        messages += [{"role": "assistant", "content": "Red"}, {"role": "user", "content": "One more"}]
        _, model = await send(client, messages, n=2)
    assert model == "model-b"
