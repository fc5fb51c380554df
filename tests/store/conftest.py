"""Fixtures for the store tests: a real moto DynamoDB server, fake AWS credentials, and one
`store` fixture that runs the same contract tests against memory, SQLite and DynamoDB."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tier_router.store.base import Store
from tier_router.store.dynamodb import DynamoDBStore
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.store.moto_server import FAKE_ENV, MotoServer
from tests.store.support import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake credentials (child processes inherit them); never real ones."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TIER_ROUTER_STORE", raising=False)
    for name, value in FAKE_ENV.items():
        monkeypatch.setenv(name, value)
    return FAKE_ENV


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def table(moto: MotoServer) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    moto.create_table(name)
    return name


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", pytest.param("dynamodb", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Store]:
    """The contract fixture: every test using it runs once per backend, all on `clock`."""
    s: Store
    if request.param == "memory":
        s = MemoryStore(clock=clock)
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "state.db", clock=clock)
    else:
        moto: MotoServer = request.getfixturevalue("moto")
        s = DynamoDBStore(request.getfixturevalue("table"), endpoint=moto.endpoint, clock=clock)
    yield s
    await s.aclose()
