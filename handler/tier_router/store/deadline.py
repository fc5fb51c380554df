"""Any `Store`-shaped object behind the base class's deadline, validation and outage log.

The stores of this package take `deadline_s` themselves (`open_store` passes
`Settings.store_timeout_s`). This adapter is for the others: a store built elsewhere, a
test double. A call that never returns — a network black hole, a wedged lock — becomes
`StoreUnavailable` after `timeout_s`, which every feature already treats as "store
unavailable" (fail open, or a 503 for budgets with `on_store_error: reject`).
"""

from __future__ import annotations

from tier_router.store.base import Marks, Scalar, Store, Value


class DeadlineStore(Store):
    """`inner`'s public methods (any object with them), each under a deadline of `timeout_s`."""

    def __init__(self, inner: Store, timeout_s: float) -> None:
        super().__init__(deadline_s=timeout_s)
        self.inner = inner
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"DeadlineStore({self.inner!r}, {self.timeout_s:g})"

    async def _get_many(self, keys: list[str]) -> dict[str, Value]:
        return await self.inner.get_many(keys)

    async def _get(self, key: str) -> Value | None:
        return await self.inner.get(key)

    async def _put(self, key: str, value: Value, expires_at: int | None) -> None:
        await self.inner.put(key, value, expires_at=expires_at)

    async def _add(
        self, key: str, deltas: dict[str, int], limits: dict[str, int], expires_at: int | None, marks: Marks
    ) -> dict[str, int] | None:
        return await self.inner.add(
            key,
            deltas,
            expires_at=expires_at,
            limits=limits or None,
            claim=marks.claim,
            release=marks.release,
            absent=marks.absent,
            drop=marks.drop,
        )

    async def _put_if(
        self, key: str, value: Value, expires_at: int | None, expected: dict[str, Scalar | None]
    ) -> bool:
        return await self.inner.put_if(key, value, expected=expected, expires_at=expires_at)

    async def _delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def _ping(self) -> None:
        await self.inner.ping()

    async def _aclose(self) -> None:
        await self.inner.aclose()
