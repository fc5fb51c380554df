"""Turn a store URL into a `Store`, so deployment picks the backend with one setting.

    memory://                                  one process, lost on exit (tests)
    sqlite:///relative/path.db                 one machine, several processes (local default)
    sqlite:////absolute/path.db                (SQLAlchemy's convention: 4 slashes = absolute)
    dynamodb://table[?region=..&endpoint=..]   production (AWS Lambda)

The URL comes from the caller, else `$TIER_ROUTER_STORE`, else `DEFAULT_STORE_URL`.
Opening is cheap and does no I/O: connections are made on first use.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from tier_router.store.base import Store

STORE_ENV = "TIER_ROUTER_STORE"
DEFAULT_STORE_URL = "sqlite:///.tier-router/state.db"

_FORMS = (
    "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "dynamodb://table-name[?region=us-east-1&endpoint=http://127.0.0.1:8000]"
)


def store_url_from_env() -> str:
    return os.environ.get(STORE_ENV) or DEFAULT_STORE_URL


def open_store(url: str | None = None, *, http_client: httpx.AsyncClient | None = None) -> Store:
    """Build the store named by `url` (see module doc). `http_client` is shared by DynamoDB."""
    url = url or store_url_from_env()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a store URL: {url!r}; valid forms: {_FORMS}")
    scheme = scheme.lower()

    if scheme == "memory":
        from tier_router.store.memory import MemoryStore

        return MemoryStore()

    if scheme == "sqlite":
        from tier_router.store.sqlite import SQLiteStore

        if not rest.startswith("/") or len(rest) < 2:
            raise ValueError(f"sqlite URL needs a path, like sqlite:///state.db; got {url!r}")
        path = Path(rest[1:])  # drop the slash that ends the (empty) host part
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path)

    if scheme == "dynamodb":
        from tier_router.store.dynamodb import DynamoDBStore

        parts = urlsplit(url)
        table = parts.netloc or parts.path.strip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"region", "endpoint"}
        if not table or unknown:
            raise ValueError(
                f"bad dynamodb URL {url!r}: needs a table name; known options are region, endpoint"
            )
        return DynamoDBStore(
            table, region=query.get("region"), endpoint=query.get("endpoint"), http_client=http_client
        )

    raise ValueError(f"unknown store scheme {scheme!r} in {url!r}; valid forms: {_FORMS}")
