"""Turn a store URL into a `Store`, so deployment picks the backend with one setting.

    memory://                                  one process, lost on exit (tests)
    sqlite:///relative/path.db                 one machine, several processes (local default)
    sqlite:////absolute/path.db                (SQLAlchemy's convention: 4 slashes = absolute)
    dynamodb://table[?region=..&endpoint=..]   production (AWS Lambda)

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

from tier_router.settings import Settings
from tier_router.store.base import Store

_FORMS = (
    "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "dynamodb://table-name[?region=us-east-1&endpoint=http://127.0.0.1:8000]"
)


def open_store(url: str, *, settings: Settings, http_client: httpx.AsyncClient | None = None) -> Store:
    """Build the store named by `url` (see module doc). `http_client` is shared by DynamoDB.
    The deadline of every call is `settings.store_timeout_s`."""
    deadline_s = settings.store_timeout_s
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a store URL: {url!r}; valid forms: {_FORMS}")
    scheme = scheme.lower()

    if scheme == "memory":
        from tier_router.store.memory import MemoryStore

        return MemoryStore(deadline_s=deadline_s)

    if scheme == "sqlite":
        from tier_router.store.sqlite import SQLiteStore

        if not rest.startswith("/") or len(rest) < 2:
            raise ValueError(f"sqlite URL needs a path, like sqlite:///state.db; got {url!r}")
        path = Path(rest[1:])  # drop the slash that ends the (empty) host part
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path, deadline_s=deadline_s)

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
        aws = settings
        return DynamoDBStore(
            table,
            region=query.get("region") or aws.aws_region,
            endpoint=query.get("endpoint") or aws.aws_endpoint("dynamodb"),
            credentials=aws.aws_credentials,
            http_client=http_client,
            deadline_s=deadline_s,
        )

    raise ValueError(f"unknown store scheme {scheme!r} in {url!r}; valid forms: {_FORMS}")
