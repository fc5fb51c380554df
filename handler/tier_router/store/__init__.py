"""Shared state behind one small async interface (see `tier_router.store.base`).

Pick a backend by URL with `open_store`; the concrete stores live in their own modules
and are imported only when used (DynamoDB pulls in the AWS client, SQLite a worker thread).
"""

from tier_router.store.base import Scalar, Store, StoreError, StoreUnavailable, Value
from tier_router.store.factory import open_store

__all__ = ["Scalar", "Store", "StoreError", "StoreUnavailable", "Value", "open_store"]
