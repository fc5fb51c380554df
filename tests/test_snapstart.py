"""SnapStart's restore hooks (`tier_router.snapstart`): registered by `lambda_entry` only where
`snapshot_restore_py` exists (Lambda's runtime; here a fake module in sys.modules), and after a
restore two environments from one snapshot (here: two forks of one initialised process) draw
different request ids, holders and random numbers, on fresh connections."""

from __future__ import annotations

import importlib
import json
import os
import random
import sys
import types
from typing import Any

import pytest

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


def load_entry(monkeypatch: pytest.MonkeyPatch, runtime: FakeRuntime | None) -> Any:
    monkeypatch.setenv("TIER_ROUTER_RULES", str(unjudged_demo()))
    monkeypatch.setenv("TIER_ROUTER_STORE", "memory://")
    for name in ("tier_router.lambda_entry", "tier_router.asgi", "tier_router.snapstart"):
        sys.modules.pop(name, None)
    if runtime is None:
        monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import -> ImportError
    else:
        monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime)
    return importlib.import_module("tier_router.lambda_entry")


def draws(entry: Any) -> dict[str, Any]:
    from tier_router import lifecycle

    gateway = entry.app.gateway
    holds = gateway.spend.guard.holds if gateway.spend.guard is not None else None
    return {
        "request_id": lifecycle.request_id_of({}),
        "random": random.random(),
        "jitter": gateway.forwarder.rng.random(),
        "holder": holds.name("req", 0.0) if holds is not None else None,
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
        if first[name] is not None:
            assert first[name] != second[name], name
    assert first["request_id"].endswith("00000001")  # a fresh counter, not the snapshot's


def test_the_restore_closes_the_connection_pool_and_the_client_stays_usable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = FakeRuntime()
    entry = load_entry(monkeypatch, runtime)
    client = entry.app.gateway.client
    pool = client._transport._pool
    closed: list[object] = []
    real_aclose = pool.aclose

    async def aclose() -> None:
        closed.append(pool)
        await real_aclose()

    monkeypatch.setattr(pool, "aclose", aclose)
    runtime.restore()
    assert closed == [pool]
    assert not client.is_closed  # the client takes new requests: its pool opens new connections


def test_the_restore_marks_cached_secrets_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = FakeRuntime()
    entry = load_entry(monkeypatch, runtime)
    keys = types.SimpleNamespace(_loaded_at=123.0)
    monkeypatch.setattr(entry.app.gateway, "keys", keys)
    runtime.restore()
    assert keys._loaded_at is None


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
