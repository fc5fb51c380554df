"""Fixtures for the spend tests: a fake clock and one `store` fixture that runs a test on
memory, SQLite and (integration) DynamoDB-on-moto — the approach of tests/store/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tier_router.store.base import Store
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.store.moto_server import FAKE_ENV, MotoServer
from tests.store.support import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def spend_moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "sqlite", pytest.param("dynamodb", marks=pytest.mark.integration)])
async def store(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Store]:
    """Every test using it runs once per backend, all on `clock`."""
    s: Store
    if request.param == "memory":
        s = MemoryStore(clock=clock)
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "state.db", clock=clock)
    else:
        from tier_router.store.dynamodb import DynamoDBStore

        for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "TIER_ROUTER_DYNAMODB_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in FAKE_ENV.items():  # fake credentials, never real ones
            monkeypatch.setenv(name, value)
        moto: MotoServer = request.getfixturevalue("spend_moto")
        table = f"t-{uuid.uuid4().hex[:12]}"
        moto.create_table(table)
        s = DynamoDBStore(table, endpoint=moto.endpoint, clock=clock)
    yield s
    await s.aclose()
