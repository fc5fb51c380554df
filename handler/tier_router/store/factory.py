"""Turn a store URL into a `Store`, so deployment picks the backend with one setting.

    memory://                                  one process, lost on exit (tests)
    sqlite:///relative/path.db                 one machine, several processes (local default)
    sqlite:////absolute/path.db                (SQLAlchemy's convention: 4 slashes = absolute)
    dynamodb://table[?region=..&endpoint=..]   production (AWS Lambda)

With `Settings.shared_store` (a table several regions share), the store is wrapped in
`RegionalStore`: this region's keys only (`store.regional`).

The URL is the caller's (`Settings.store_url`; its default, `settings.DEFAULT_STORE`, is
the local SQLite file). Everything else comes from `settings`: the deadline on every call
(`store_timeout_s`) and, for DynamoDB, the region, endpoint and credentials (a URL's
`?region=` / `?endpoint=` win). Opening is cheap and does no I/O: connections are made on
first use.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from tier_router.errors import ConfigError
from tier_router.settings import Settings
from tier_router.store.base import Store

_FORMS = (
    "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "dynamodb://table-name[?region=us-east-1&endpoint=http://127.0.0.1:8000]"
)


class StoreURLError(ConfigError):
    """A store URL the factory cannot use; the message names the URL and the valid forms."""


def check_store_url(url: str) -> None:
    """Raise `StoreURLError` unless `url` is a store URL `open_store` accepts (no I/O)."""
    _parse(url)


def _parse(url: str) -> tuple[str, str]:
    """(scheme, the rest after `://`), checked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StoreURLError(f"not a store URL: {url!r}; valid forms: {_FORMS}")
    scheme = scheme.lower()
    if scheme == "sqlite" and (not rest.startswith("/") or len(rest) < 2):
        raise StoreURLError(f"sqlite URL needs a path, like sqlite:///state.db; got {url!r}")
    if scheme == "dynamodb":
        table, query = _dynamodb_parts(url)
        if not table or set(query) - {"region", "endpoint"}:
            raise StoreURLError(
                f"bad dynamodb URL {url!r}: needs a table name; known options are region, endpoint"
            )
    elif scheme not in ("memory", "sqlite"):
        raise StoreURLError(f"unknown store scheme {scheme!r} in {url!r}; valid forms: {_FORMS}")
    return scheme, rest


def _dynamodb_parts(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.netloc or parts.path.strip("/"), {k: v[-1] for k, v in parse_qs(parts.query).items()}


def open_store(url: str, *, settings: Settings, http_client: httpx.AsyncClient | None = None) -> Store:
    """Build the store named by `url` (see module doc). `http_client` is shared by DynamoDB.
    The deadline of every call is `settings.store_timeout_s`. A bad URL: `StoreURLError`."""
    store = _open(url, settings, http_client)
    if not settings.shared_store:
        return store
    if not settings.region:
        raise StoreURLError(
            "TIER_ROUTER_SHARED_STORE is set but the region is unknown: set AWS_REGION or TIER_ROUTER_REGION"
        )
    from tier_router.store.regional import RegionalStore

    return RegionalStore(store, settings.region)


def _open(url: str, settings: Settings, http_client: httpx.AsyncClient | None) -> Store:
    deadline_s = settings.store_timeout_s
    scheme, rest = _parse(url)

    if scheme == "memory":
        from tier_router.store.memory import MemoryStore

        return MemoryStore(deadline_s=deadline_s)

    if scheme == "sqlite":
        from tier_router.store.sqlite import SQLiteStore

        path = Path(rest[1:])  # drop the slash that ends the (empty) host part
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path, deadline_s=deadline_s)

    from tier_router.store.dynamodb import DynamoDBStore

    table, query = _dynamodb_parts(url)
    return DynamoDBStore(
        table,
        region=query.get("region") or settings.aws_region,
        endpoint=query.get("endpoint") or settings.aws_endpoint("dynamodb"),
        credentials=settings.aws_credentials,
        http_client=http_client,
        deadline_s=deadline_s,
    )
