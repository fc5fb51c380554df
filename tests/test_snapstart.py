"""SnapStart's restore hooks (`tier_router.snapstart`): registered by `lambda_entry` only where
`snapshot_restore_py` exists (Lambda's runtime; here a fake module in sys.modules), and after a
restore two environments from one snapshot (here: two forks of one initialised process) draw
different request ids, holders and random numbers, on fresh connections."""

from __future__ import annotations

import asyncio
import functools
import importlib
import itertools
import json
import os
import random
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.demo import unjudged_demo


class FakeRuntime(types.ModuleType):
    """`snapshot_restore_py`'s two registration functions, recording what they are given."""

    def __init__(self) -> None:
        super().__init__("snapshot_restore_py")
        self.before: list[tuple[Any, tuple[Any, ...]]] = []
        self.after: list[tuple[Any, tuple[Any, ...]]] = []

    def register_before_snapshot(self, func: Any, *args: Any) -> None:
        self.before.append((func, args))

    def register_after_restore(self, func: Any, *args: Any) -> None:
        self.after.append((func, args))

    def restore(self) -> None:
        for func, args in self.after:
            func(*args)


@functools.cache
def budgeted_demo() -> Path:
    """The demo rules with a daily cap: the spend holds (and their names) exist."""
    rules = yaml.safe_load(unjudged_demo().read_text())
    rules["budgets"] = {**rules.get("budgets", {}), "daily_usd": 100}
    path = unjudged_demo().with_name("budgeted-demo.yaml")
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def load_entry(monkeypatch: pytest.MonkeyPatch, runtime: FakeRuntime | None) -> Any:
    monkeypatch.setenv("TIER_ROUTER_RULES", str(budgeted_demo()))
    monkeypatch.setenv("TIER_ROUTER_STORE", "memory://")
    for name in ("tier_router.lambda_entry", "tier_router.asgi", "tier_router.snapstart"):
        monkeypatch.delitem(sys.modules, name, raising=False)  # put back after the test
    if runtime is None:
        monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import -> ImportError
    else:
        monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime)
    return importlib.import_module("tier_router.lambda_entry")


def draws(entry: Any) -> dict[str, Any]:
    from tier_router import lifecycle

    gateway = entry.app.gateway
    return {
        "request_id": lifecycle.request_id_of({}),
        "random": random.random(),
        "jitter": gateway.forwarder.rng.random(),
        "holder": gateway.spend.guard.holds.name("req", 0.0),
    }


def in_two_forks(entry: Any, runtime: FakeRuntime | None) -> list[dict[str, Any]]:
    """Each child: (restore, if a runtime is given) then draw; the parent collects both. A fork
    reseeds `random` itself (a restore does not): each child first puts back the parent's state."""
    state = random.getstate()
    results = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one restored environment
            os.close(read)
            code = 0
            try:
                random.setstate(state)
                if runtime is not None:
                    runtime.restore()
                os.write(write, json.dumps(draws(entry)).encode())
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        results.append(json.loads(data))
    return results


def test_without_the_runtime_module_nothing_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    load_entry(monkeypatch, None)
    assert "tier_router.snapstart" not in sys.modules


def test_the_entry_registers_both_hooks_with_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = FakeRuntime()
    entry = load_entry(monkeypatch, runtime)
    assert len(runtime.before) == 1
    assert len(runtime.after) == 1
    func, args = runtime.after[0]
    assert func.__name__ == "after_restore"
    assert args == (entry.app,)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_environments_from_one_snapshot_draw_the_same_without_the_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The problem the hook solves: forks of one process repeat each other's ids and draws."""
    entry = load_entry(monkeypatch, None)
    first, second = in_two_forks(entry, None)
    assert first == second


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_restored_environments_draw_different_ids_and_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = FakeRuntime()
    entry = load_entry(monkeypatch, runtime)
    first, second = in_two_forks(entry, runtime)
    for name in ("request_id", "random", "jitter", "holder"):
        assert first[name] != second[name], name
    assert first["request_id"].endswith("00000001")  # a fresh counter, not the snapshot's


class Upstream:
    """An HTTP/1.1 server on 127.0.0.1 answering `ok` to every request: it records each
    connection it accepts and when the client closes it."""

    def __init__(self) -> None:
        self.connections: list[asyncio.Event] = []  # set when that connection is closed
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closed = asyncio.Event()
        self.connections.append(closed)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            closed.set()
            writer.close()


def test_the_restore_closes_pooled_connections_and_the_next_request_opens_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = FakeRuntime()
    entry = load_entry(monkeypatch, runtime)
    client = entry.app.gateway.client
    loop = asyncio.new_event_loop()  # Mangum's loop: the hooks run on the current one
    asyncio.set_event_loop(loop)
    upstream = Upstream()
    try:
        url = loop.run_until_complete(upstream.start())
        for _ in range(2):
            assert loop.run_until_complete(client.get(url)).text == "ok"
        assert len(upstream.connections) == 1  # pooled: the snapshot would hold this one
        runtime.restore()
        loop.run_until_complete(asyncio.wait_for(upstream.connections[0].wait(), 10))  # closed
        assert loop.run_until_complete(client.get(url)).text == "ok"  # the client still works,
        assert len(upstream.connections) == 2  # on a connection of its own
    finally:
        loop.run_until_complete(client.aclose())
        if upstream.server is not None:
            upstream.server.close()
            loop.run_until_complete(upstream.server.wait_closed())
        asyncio.set_event_loop(None)
        loop.close()


def test_the_restore_marks_the_ssm_key_cache_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = FakeRuntime()
    entry = load_entry(monkeypatch, runtime)
    from tier_router.aws.ssm import SSMKeySource

    keys = SSMKeySource("/p/", names=["KEY"], client=types.SimpleNamespace(url="unused"))  # type: ignore[arg-type]
    marked: list[bool] = []
    monkeypatch.setattr(keys, "mark_stale", lambda: marked.append(True))
    monkeypatch.setattr(entry.app.gateway, "keys", keys)
    runtime.restore()
    assert marked == [True]


def test_a_reseeded_holds_names_differ_from_the_original_process(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = load_entry(monkeypatch, FakeRuntime())
    holds = entry.app.gateway.spend.guard.holds
    state = (holds._process, holds._sequence)  # what a fork or a snapshot copies
    first = holds.name("req", 0.0)
    holds._process, holds._sequence = state[0], itertools.count(1)  # replay the copy
    assert holds.name("req", 0.0) == first
    holds._process, holds._sequence = state[0], itertools.count(1)
    holds.reseed()
    assert holds.name("req", 0.0) != first


def test_a_failing_step_does_not_fail_the_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = FakeRuntime()
    entry = load_entry(monkeypatch, runtime)
    from tier_router import lifecycle

    before = lifecycle.REQUEST_ID_PREFIX
    snapstart = entry.snapstart  # the module the hooks were registered from

    def broken(gateway: Any) -> None:
        raise RuntimeError("broken step")

    monkeypatch.setattr(snapstart, "reseed_random", broken)  # the first step
    runtime.restore()  # does not raise
    assert before != lifecycle.REQUEST_ID_PREFIX  # the next steps still ran
