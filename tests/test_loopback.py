"""tests.support.loopback.free_port: a port for a child process's server that no other pytest-xdist
worker, and nothing the OS hands out, can take before the child binds it."""

from __future__ import annotations

import socket

import pytest

from tests.support import loopback
from tests.support.loopback import ephemeral_ports, free_port, worker_slice


def test_each_worker_has_its_own_ports_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    low, _ = ephemeral_ports()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    mine = worker_slice()
    assert mine is not None
    assert mine.stop <= low
    assert {free_port() for _ in range(20)} <= set(mine)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert not set(worker_slice() or ()) & set(mine)
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert not set(worker_slice() or ()) & set(mine)  # a run without workers


def test_a_port_in_use_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = worker_slice()
    assert ports is not None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        in_use = taken.getsockname()[1]
        taken.listen()
        candidates = [in_use, *(p for p in ports if loopback.bindable(p))][:2]
        monkeypatch.setattr(loopback.random, "sample", lambda population, k: candidates)
        assert free_port() == candidates[1]
