"""A deadline on every store call, so a hung store can never hang a request.

Every feature on the store already treats `StoreError` as "store unavailable" and fails
open (or, for budgets with `on_store_error: reject`, refuses with a 503). What none of them
can do is notice a call that never returns: a network black hole, a wedged lock. This
wrapper turns a call that takes longer than `timeout_s` into `StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from tier_router.store.base import Scalar, Store, StoreUnavailable, Value


class DeadlineStore:
    def __init__(self, inner: Store, timeout_s: float) -> None:
        self.inner = inner
        self.timeout_s = timeout_s

    async def _call(self, what: str, awaitable: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await awaitable
        except TimeoutError:
            raise StoreUnavailable(f"store {what} took longer than {self.timeout_s:g}s") from None

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        return await self._call("get_many", self.inner.get_many(keys))

    async def get(self, key: str) -> Value | None:
        return await self._call("get", self.inner.get(key))

    async def put(self, key: str, value: Mapping[str, Scalar], *, expires_at: float | None = None) -> None:
        return await self._call("put", self.inner.put(key, value, expires_at=expires_at))

    async def add(
        self,
        key: str,
        deltas: Mapping[str, int],
        *,
        expires_at: float | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        return await self._call("add", self.inner.add(key, deltas, expires_at=expires_at, limits=limits))

    async def put_if(
        self,
        key: str,
        value: Mapping[str, Scalar],
        *,
        expected: Mapping[str, Scalar | None],
        expires_at: float | None = None,
    ) -> bool:
        return await self._call(
            "put_if", self.inner.put_if(key, value, expected=expected, expires_at=expires_at)
        )

    async def delete(self, key: str) -> None:
        return await self._call("delete", self.inner.delete(key))

    async def ping(self) -> None:
        return await self._call("ping", self.inner.ping())

    async def aclose(self) -> None:
        await self.inner.aclose()
