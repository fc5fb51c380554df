"""Exact-match response cache: keys, cacheability, storage, TTL, size limit."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from tier_router.spend.cache import (
    ResponseCache,
    cache_key,
    header_opt_in,
    is_cacheable,
    should_store,
)
from tier_router.store.base import Store
from tier_router.store.memory import MemoryStore

from tests.support.clock import FakeClock
from tests.support.stores import Failing

BODY: dict[str, Any] = {
    "model": "auto",
    "temperature": 0,
    "max_tokens": 100,
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
}


def completion(text: str = "4", finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }


# --- keys ---------------------------------------------------------------------------------


def test_key_ignores_field_order_and_whitespace_free_encoding() -> None:
    reordered = dict(reversed(list(BODY.items())))
    reordered["messages"] = [dict(reversed(list(m.items()))) for m in BODY["messages"]]
    assert cache_key(reordered, "budget") == cache_key(BODY, "budget")
    assert len(cache_key(BODY, "budget")) == 64


def test_key_depends_on_tier_not_on_the_model_name() -> None:
    assert cache_key(BODY, "budget") != cache_key(BODY, "premium")
    assert cache_key({**BODY, "model": "premium"}, "budget") == cache_key(BODY, "budget")


@pytest.mark.parametrize(
    "extra",
    [
        {"stream": False},
        {"stream_options": {"include_usage": True}},
        {"user": "u-1"},
        {"safety_identifier": "s"},
        {"metadata": {"task": "batch"}},
        {"store": True},
        {"service_tier": "flex"},
        {"prompt_cache_key": "p"},
        {"temperature": 0.0},  # 0.0 == 0
    ],
)
def test_key_ignores_what_does_not_change_the_answer(extra: dict[str, Any]) -> None:
    assert cache_key({**BODY, **extra}, "budget") == cache_key(BODY, "budget")


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 2},
        {"seed": 1},
        {"max_tokens": 101},
        {"temperature": 0.5},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"response_format": {"type": "json_object"}},
        {"messages": [{"role": "user", "content": "2+3?"}]},
    ],
)
def test_key_keeps_what_does(extra: dict[str, Any]) -> None:
    assert cache_key({**BODY, **extra}, "budget") != cache_key(BODY, "budget")


def test_key_scope_separates_tenants() -> None:
    assert cache_key(BODY, "budget", scope="alice") != cache_key(BODY, "budget", scope="bob")
    assert cache_key(BODY, "budget", scope="alice") == cache_key(BODY, "budget", scope="alice")


def test_key_survives_odd_text() -> None:
    odd = {**BODY, "messages": [{"role": "user", "content": "\ud800 lone surrogate, ключ, 🙂"}]}
    assert cache_key(odd, "t") != cache_key(BODY, "t")


# --- what is cacheable ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "opt_in", "expected"),
    [
        ({"temperature": 0}, None, True),
        ({"temperature": 0.0}, None, True),
        ({}, None, False),  # provider default temperature is not deterministic
        ({"temperature": 0.7}, None, False),
        ({"temperature": False}, None, False),
        ({"temperature": "0"}, None, False),
        ({"temperature": 0.7}, True, True),  # header opt-in
        ({"temperature": 0}, False, False),  # header opt-out
        ({"temperature": 0, "stream": True}, None, False),
        ({"temperature": 0, "stream": True}, True, False),  # never streams
    ],
)
def test_is_cacheable(body: dict[str, Any], opt_in: bool | None, expected: bool) -> None:
    assert is_cacheable(body, opt_in=opt_in) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("on", True),
        (" ON ", True),
        ("1", True),
        ("off", False),
        ("no-store", False),
        ("maybe", None),
    ],
)
def test_header_opt_in(value: str | None, expected: bool | None) -> None:
    assert header_opt_in(value) is expected


def test_should_store_only_whole_answers() -> None:
    assert should_store(completion())
    assert should_store(completion(finish="tool_calls"))
    assert not should_store(completion(finish="length"))
    assert not should_store(completion(finish="content_filter"))
    assert not should_store({"choices": []})
    assert not should_store({})
    two = completion()
    two["choices"].append({"index": 1, "finish_reason": "length"})
    assert not should_store(two)


# --- storage ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_roundtrip_and_ttl(store: Store, clock: FakeClock) -> None:
    cache = ResponseCache(store, clock=clock)
    key = cache_key(BODY, "budget")
    assert await cache.get(key) is None
    answer = completion("four — 4 ✓")
    assert await cache.put(key, answer, ttl_s=60)
    assert await cache.get(key) == answer
    clock.advance(59)
    assert await cache.get(key) == answer
    clock.advance(1.5)
    assert await cache.get(key) is None
    assert not await cache.put(key, answer, ttl_s=0)


@pytest.mark.anyio
async def test_large_compressible_entries_fit(store: Store, clock: FakeClock) -> None:
    cache = ResponseCache(store, clock=clock)
    big = completion("lorem ipsum dolor sit amet " * 40_000)  # ~1 MB of JSON, compresses well
    assert await cache.put("k", big, ttl_s=60)
    assert await cache.get("k") == big


@pytest.mark.anyio
async def test_oversize_entries_are_skipped(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore(clock=clock)
    cache = ResponseCache(store, clock=clock, max_item_bytes=50_000)
    noise = completion(os.urandom(60_000).hex())  # incompressible
    with caplog.at_level(logging.INFO, "tier_router.spend.cache"):
        assert not await cache.put("k", noise, ttl_s=60)
    assert await store.get("cache:k") is None
    assert len([r for r in caplog.records if "skipped" in r.message]) == 1


@pytest.mark.anyio
async def test_unreadable_entries_are_misses(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    cache = ResponseCache(store, clock=clock)
    await store.put("cache:a", {"v": 1, "z": "not base64!"})
    await store.put("cache:b", {"v": 99, "z": ""})
    await store.put("cache:c", {"v": 1})
    import base64
    import zlib

    await store.put("cache:d", {"v": 1, "z": base64.b64encode(zlib.compress(b"[1, 2]")).decode()})
    for key in "abcd":
        assert await cache.get(key) is None


@pytest.mark.anyio
async def test_store_down_is_a_miss(clock: FakeClock) -> None:
    cache = ResponseCache(Failing(MemoryStore(clock=clock)), clock=clock)
    assert await cache.get("k") is None
    assert not await cache.put("k", completion(), ttl_s=60)
