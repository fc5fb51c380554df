"""Store URLs: one setting picks the backend; mistakes fail loudly with the valid forms."""

from __future__ import annotations

from pathlib import Path

import pytest
from tier_router.settings import DEFAULT_STORE, Settings
from tier_router.store import open_store
from tier_router.store.dynamodb import DynamoDBStore
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore


def test_memory() -> None:
    a, b = (
        open_store("memory://", settings=Settings.from_env()),
        open_store("memory://", settings=Settings.from_env()),
    )
    assert isinstance(a, MemoryStore)
    assert a is not b  # each call is its own state


def test_sqlite_relative_path_creates_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///nested/dir/state.db", settings=Settings.from_env())
    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == Path("nested/dir/state.db")
    assert (tmp_path / "nested" / "dir").is_dir()


def test_sqlite_absolute_path(tmp_path: Path) -> None:
    store = open_store(
        f"sqlite:///{tmp_path}/abs.db", settings=Settings.from_env()
    )  # tmp_path starts with '/': 4 slashes
    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == tmp_path / "abs.db"


def test_default_is_local_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.store_url == DEFAULT_STORE == "sqlite:///.tier-router/state.db"
    store = open_store(settings.store_url, settings=settings)
    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == Path(".tier-router/state.db")
    assert (tmp_path / ".tier-router").is_dir()


def test_env_var_picks_the_store() -> None:
    settings = Settings.from_env({"TIER_ROUTER_STORE": "memory://"})
    assert isinstance(open_store(settings.store_url, settings=settings), MemoryStore)


def test_settings_give_every_store_its_deadline(tmp_path: Path) -> None:
    settings = Settings.from_env({"TIER_ROUTER_STORE_TIMEOUT_S": "0.25", "AWS_REGION": "eu-west-1"})
    for url in ("memory://", f"sqlite:///{tmp_path}/s.db", "dynamodb://t"):
        assert open_store(url, settings=settings).deadline_s == 0.25


def test_dynamodb_url_with_options() -> None:
    store = open_store(
        "dynamodb://tier-router-state?region=eu-west-1&endpoint=http://127.0.0.1:5000",
        settings=Settings.from_env(),
    )
    assert isinstance(store, DynamoDBStore)
    assert (store.table, store.region, store.url) == (
        "tier-router-state",
        "eu-west-1",
        "http://127.0.0.1:5000/",
    )


def test_dynamodb_url_uses_the_settings() -> None:
    settings = Settings.from_env({"AWS_REGION": "us-west-2"})
    store = open_store("dynamodb://state", settings=settings)
    assert isinstance(store, DynamoDBStore)
    assert store.url == "https://dynamodb.us-west-2.amazonaws.com/"

    settings = Settings.from_env({"AWS_DEFAULT_REGION": "eu-central-1"})
    assert open_store("dynamodb://state", settings=settings).region == "eu-central-1"
    local = Settings.from_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"})
    assert open_store("dynamodb://state", settings=local).url == "http://127.0.0.1:4566/"
    own = Settings.from_env(
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000"}
    )
    assert open_store("dynamodb://state", settings=own).url == "http://127.0.0.1:8000/"
    # The URL's options win over the settings.
    store = open_store("dynamodb://state?region=ap-south-1", settings=settings)
    assert store.region == "ap-south-1"
    with pytest.raises(ValueError, match="region"):
        open_store("dynamodb://state", settings=Settings.from_env({}))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost", "unknown store scheme 'redis'"),
        ("state.db", "not a store URL"),
        ("sqlite://", "needs a path"),
        ("dynamodb://?region=us-east-1", "needs a table name"),
        ("dynamodb://t?regoin=us-east-1", "known options are region, endpoint"),
    ],
)
def test_bad_urls_list_the_valid_forms(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        open_store(url, settings=Settings.from_env())
    if "scheme" in message or "not a store URL" in message:
        assert "memory://" in str(info.value)
        assert "sqlite:///" in str(info.value)
        assert "dynamodb://" in str(info.value)
