"""Shared state behind one small async interface (see `tier_router.store.base`).

Pick a backend by URL with `open_store`; the concrete stores live in their own modules
and are imported only when used (DynamoDB pulls in httpx, SQLite a worker thread).
"""

from tier_router.store.base import Scalar, Store, StoreError, StoreUnavailable, Value
from tier_router.store.factory import DEFAULT_STORE_URL, STORE_ENV, open_store

__all__ = [
    "DEFAULT_STORE_URL",
    "STORE_ENV",
    "Scalar",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Value",
    "open_store",
]
