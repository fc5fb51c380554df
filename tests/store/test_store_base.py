"""The `Store` base class: validation, expiry rounding, the deadline and the once-per-outage
log happen in the base, for every backend, before (or around) the backend's primitives."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from tier_router.store.base import Marks, Scalar, Store, StoreError, StoreUnavailable, Value
from tier_router.store.deadline import DeadlineStore
from tier_router.store.dynamodb import DynamoDBStore
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio

INVALID_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = [
    ("get", ("",), {}, "non-empty"),
    ("get_many", (["ok", ""],), {}, "non-empty"),
    ("get", ("k" * 2049,), {}, "bytes"),
    ("put", ("k", {"pk": 1}), {}, "reserved"),
    ("put", ("k", {"flag": True}), {}, "int or str"),
    ("put", ("k", {"n": 1}), {"expires_at": float("nan")}, "epoch seconds"),
    ("add", ("k", {}), {}, "at least one"),
    ("add", ("k", {"n": 1.5}), {}, "must be an int"),
    ("add", ("k", {"n": 1}), {"limits": {"m": 1}}, "not among"),
    ("add", ("k", {"n": 1}), {"limits": {"n": "9"}}, "must be an int"),
    ("put_if", ("k", {"n": 1}), {"expected": {"expires_at": None}}, "reserved"),
    ("put_if", ("k", {"n": 1}), {"expected": {"n": 1.0}}, "int, str or None"),
    ("delete", ("",), {}, "non-empty"),
]


class Spy(Store):
    """A backend that records what reaches its primitives."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: StoreError | None = None
        self.delay = 0.0
        self.closed = 0

    def __repr__(self) -> str:
        return "Spy()"

    async def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail

    async def _get_many(self, keys: list[str]) -> dict[str, Value]:
        await self._record("get_many", keys)
        return {}

    async def _put(self, key: str, value: Value, expires_at: int | None) -> None:
        await self._record("put", key, value, expires_at)

    async def _add(
        self, key: str, deltas: dict[str, int], limits: dict[str, int], expires_at: int | None, marks: Marks
    ) -> dict[str, int] | None:
        await self._record("add", key, deltas, limits, expires_at)
        return dict(deltas)

    async def _put_if(
        self, key: str, value: Value, expires_at: int | None, expected: dict[str, Scalar | None]
    ) -> bool:
        await self._record("put_if", key, value, expires_at, expected)
        return True

    async def _delete(self, key: str) -> None:
        await self._record("delete", key)

    async def _aclose(self) -> None:
        self.closed += 1


@pytest.fixture(params=["memory", "sqlite", "dynamodb", "deadline"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Every backend, and the adapter: none is reachable or needs to be — validation comes first."""
    stores = {
        "memory": lambda: MemoryStore(),
        "sqlite": lambda: SQLiteStore(tmp_path / "state.db"),
        "dynamodb": lambda: DynamoDBStore("t", endpoint="http://127.0.0.1:9", max_attempts=1),
        "deadline": lambda: DeadlineStore(Spy(), 1.0),
    }
    store = stores[request.param]()
    yield store
    await store.aclose()


@pytest.mark.parametrize(("method", "args", "kwargs", "message"), INVALID_CALLS)
async def test_every_backend_validates_in_the_base(
    any_store: Store, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await getattr(any_store, method)(*args, **kwargs)


@pytest.mark.parametrize(("method", "args", "kwargs", "message"), INVALID_CALLS)
async def test_invalid_calls_never_reach_a_primitive(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    spy = Spy()
    with pytest.raises(ValueError, match=message):
        await getattr(spy, method)(*args, **kwargs)
    assert spy.calls == []


async def test_primitives_get_normalized_arguments() -> None:
    spy = Spy()
    deltas = {"n": 1}
    await spy.put("k", {"a": 1}, expires_at=100.2)
    await spy.add("k", deltas, expires_at=100.0)
    await spy.add("k", deltas, limits={"n": 5})
    await spy.put_if("k", {"a": "x"}, expected={"a": None}, expires_at=99.5)
    assert await spy.get_many(["a", "b", "a"]) == {}
    assert await spy.get_many([]) == {}  # nothing to read: no round trip
    await spy.delete("k")
    assert spy.calls == [
        ("put", ("k", {"a": 1}, 101)),  # expiry rounded up to whole seconds
        ("add", ("k", {"n": 1}, {}, 100)),  # no limits: {}
        ("add", ("k", {"n": 1}, {"n": 5}, None)),
        ("put_if", ("k", {"a": "x"}, 100, {"a": None})),
        ("get_many", (["a", "b"],)),  # deduplicated, order kept
        ("delete", ("k",)),
    ]
    assert spy.calls[1][1][1] is not deltas  # a copy: the backend may keep or change it


async def test_a_failing_store_is_logged_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tier_router.store")
    spy = Spy()
    spy.fail = StoreUnavailable("connection refused")
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            await spy.get("k")
    spy.fail = None
    await spy.get("k")
    spy.fail = StoreError("table not found")
    with pytest.raises(StoreError):
        await spy.put("k", {"n": 1})

    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert levels == [
        ("WARNING", "state store Spy() failed (get): connection refused"),
        ("DEBUG", "state store Spy() failed (get): connection refused"),
        ("DEBUG", "state store Spy() failed (get): connection refused"),
        ("INFO", "state store Spy() works again"),
        ("WARNING", "state store Spy() failed (put): table not found"),  # a new outage
    ]


async def test_a_call_past_the_deadline_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    spy = Spy(deadline_s=0.05)
    spy.delay = 10
    with pytest.raises(StoreUnavailable, match=r"store add took longer than 0\.05s"):
        await spy.add("k", {"n": 1})
    assert "took longer than 0.05s" in caplog.text
    spy.delay = 0
    assert await spy.add("k", {"n": 1}) == {"n": 1}


async def test_without_a_deadline_a_slow_call_just_takes_long() -> None:
    spy = Spy()
    spy.delay = 0.05
    assert await spy.add("k", {"n": 1}) == {"n": 1}


async def test_the_adapter_puts_any_store_shaped_object_under_a_deadline() -> None:
    class Hung:
        """Not a Store subclass: only the methods (a test double, a foreign store)."""

        async def get(self, key: str) -> Value | None:
            await asyncio.sleep(10)
            return None

        async def aclose(self) -> None:
            return None

    store = DeadlineStore(Hung(), 0.05)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable, match=r"store get took longer than 0\.05s"):
        await store.get("k")
    await store.aclose()


async def test_aclose_is_idempotent() -> None:
    spy = Spy()
    await spy.aclose()
    await spy.aclose()
    assert spy.closed == 1
