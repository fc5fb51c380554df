"""Fixtures used across test directories. The helpers behind them are plain modules in
`tests.support`, imported by name (`from tests.support.rules import three_providers`);
a directory's own conftest holds only what is specific to it.

- `pytest_xdist_auto_num_workers`: how many workers `-n auto` (pyproject's addopts) starts.
- `anyio_backend`: asyncio only.
- `clock`: a `FakeClock` at the real time (to the second); directories that need another
  start override it.
- `aws_env`: fake AWS credentials, nothing of the host's AWS or store settings.
- `moto` (session), `table`: moto's DynamoDB, SSM and Secrets Manager on 127.0.0.1; a new table.
- `store`: parametrized over the backends (memory, SQLite, DynamoDB on moto), all on `clock`.
- `fakes`: the fake providers on real sockets (started once per session), reset.
- `apps`: router apps in-process and clients talking to them, closed after the test.
- `upstream`: every provider mocked by respx (an unmocked URL fails the request).
- `chat`, `completion`: an OpenAI request body, a provider's answer (`tests.support.openai_bodies`).
- `rate_window`: for tests that count real-clock rate-limit windows: starts them clear of a minute edge.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
from tier_router.store.base import Store
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.support import openai_bodies
from tests.support.clock import FakeClock
from tests.support.fake_providers import FakeProviders, fake_providers
from tests.support.moto_server import MotoServer, use_fake_aws
from tests.support.router_app import Apps

WORKERS_PER_CORE = 1
"""One worker per core. The suite is mostly CPU (bench/RESULTS.md, "Issue 18: CI time"), and a
few tests hold wall-clock windows (a breaker's 2 s recovery, an event-loop stall bound) that two
workers per core on a busy machine stretched past: one per core keeps those as they were."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many workers `-n auto` (pyproject's addopts) starts: $PYTEST_XDIST_AUTO_NUM_WORKERS if
    set; none when the command names only test files or tests (`pytest tests/test_x.py::test_y`):
    a worker takes seconds of CPU to start (importing the pytest plugins), more than most files
    take to run; else WORKERS_PER_CORE per core (the suite, a test directory)."""
    configured = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if configured:
        return int(configured)
    if config.args and all(Path(arg.split("::")[0]).is_file() for arg in config.args):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return WORKERS_PER_CORE * (cores or 1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


RATE_WINDOW_MARGIN_S = 5.0
"""The rate limiter's windows are epoch minutes (spend/ratelimit.py). A test that sends a few
requests on the real clock and expects the third to be refused passes them in well under a second,
but a run that crosses a minute edge counts them in two windows (CI once saw 200, 200, 200)."""


@pytest.fixture
def rate_window() -> None:
    """Wait, when needed, until at least RATE_WINDOW_MARGIN_S remain in the current minute."""
    left = 60.0 - time.time() % 60.0
    if left < RATE_WINDOW_MARGIN_S:
        time.sleep(left + 0.05)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake AWS credentials (child processes inherit them); never real ones."""
    return use_fake_aws(monkeypatch)


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def table(moto: MotoServer) -> str:
    """A new store table on `moto`."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    moto.create_table(name)
    return name


EMULATOR_TIMEOUT_S = 30.0
"""One HTTP attempt to moto from the `store` fixture. moto serves one request at a time (see
moto_server.py): a test's 100 concurrent writes queue behind each other, which on a busy machine
(pytest-xdist workers on every core) took longer than the client's default 2 s and failed as a
ReadTimeout. These tests are about what the store computes; deadlines have tests of their own."""


@pytest.fixture(
    params=["memory", "sqlite", "regional", pytest.param("dynamodb", marks=pytest.mark.integration)]
)
async def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Store]:
    """The contract fixture: every test using it runs once per backend, all on `clock`."""
    s: Store
    if request.param == "memory":
        s = MemoryStore(clock=clock)
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "state.db", clock=clock)
    elif request.param == "regional":  # one region's view of a table several regions share
        from tier_router.store.regional import RegionalStore

        s = RegionalStore(MemoryStore(clock=clock), "eu-west-1")
    else:
        from tier_router.store.dynamodb import DynamoDBStore

        request.getfixturevalue("aws_env")
        moto: MotoServer = request.getfixturevalue("moto")
        table = request.getfixturevalue("table")
        s = DynamoDBStore(table, endpoint=moto.endpoint, clock=clock, timeout_s=EMULATOR_TIMEOUT_S)
    yield s
    await s.aclose()


@pytest.fixture(scope="session")
def _fake_providers() -> Iterator[FakeProviders]:
    with fake_providers() as running:
        yield running


@pytest.fixture
def fakes(_fake_providers: FakeProviders) -> FakeProviders:
    """The fake providers on 127.0.0.1, every one reset: mode ok, no request counted."""
    return _fake_providers.reset()


@pytest.fixture
async def apps(anyio_backend: str) -> AsyncIterator[Apps]:
    """`apps.app(rules, settings=..., keys=..., store=...)` builds an app (respx intercepts its
    upstream client); `apps.client(app)` talks to it. Every client is closed after the test."""
    opened = Apps()
    yield opened
    await opened.aclose()


@pytest.fixture
def upstream() -> Iterator[respx.MockRouter]:
    """Every provider, mocked. A request to any unmocked URL fails (respx raises)."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
def chat() -> Callable[..., dict[str, Any]]:
    """`chat(text="Say hi", model="auto", **fields)` → a chat-completions request body."""
    return openai_bodies.chat_request


@pytest.fixture
def completion() -> Callable[..., dict[str, Any]]:
    """`completion(text, model=..., usage=..., finish=..., **fields)` → a `chat.completion` body
    as a provider sends it."""
    return openai_bodies.completion
