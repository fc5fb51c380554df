"""One region's items in a state table that several regions share (a DynamoDB global table).

A global table replicates every write to the other regions' replicas about a second later, and
two regions writing the same item within that second keep one write: last writer wins, whole
item. The router's counters (spend, budget holds, rate-limit windows, breaker failure counts)
are atomic adds to shared items, and an add lost that way is never counted again: a budget
would be overrun, a limit under-counted. So when the table is shared
(`Settings.shared_store`, template.yaml's `ReplicaRegions` / `SharedTableName`), each region
writes only items of its own: `RegionalStore` puts `<region>:` before every key, and no item
is ever written by two regions. Each region is then what it would be on a table of its own
(breakers, limits and the response cache per region; budgets a share of each cap,
`budgets.region_shares`), and every region's items are readable from any region
(`tier-router status` reads them all: `in_region`).

The wrapped store validates, applies the deadline and logs outages; this only renames keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tier_router.store.base import Scalar, Store, Value, check_key

REGION_SEPARATOR = ":"


class RegionalStore(Store):
    """`inner`, with every key in `region`'s namespace (`<region>:<key>`)."""

    def __init__(self, inner: Store, region: str) -> None:
        if not region or REGION_SEPARATOR in region:
            raise ValueError(f"a region name, like eu-west-1, is needed; got {region!r}")
        super().__init__()
        self.inner = inner
        self.region = region
        self.prefix = f"{region}{REGION_SEPARATOR}"

    def __repr__(self) -> str:
        return f"RegionalStore({self.inner!r}, {self.region!r})"

    def in_region(self, region: str) -> RegionalStore:
        """The same table seen as `region`'s router sees it (to read another region's items)."""
        return RegionalStore(self.inner, region)

    def key(self, key: str) -> str:
        """`key` as stored: in this region's namespace (an invalid key: ValueError, as `Store`)."""
        return self.prefix + check_key(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        cut = len(self.prefix)
        found = await self.inner.get_many([self.key(key) for key in keys])
        return {key[cut:]: value for key, value in found.items()}

    async def get(self, key: str) -> Value | None:
        return await self.inner.get(self.key(key))

    async def put(self, key: str, value: Mapping[str, Scalar], *, expires_at: float | None = None) -> None:
        await self.inner.put(self.key(key), value, expires_at=expires_at)

    async def add(
        self,
        key: str,
        deltas: Mapping[str, int],
        *,
        expires_at: float | None = None,
        limits: Mapping[str, int] | None = None,
        claim: tuple[str, Scalar] | None = None,
        release: str | None = None,
        absent: Sequence[str] = (),
        drop: Sequence[str] = (),
    ) -> dict[str, int] | None:
        return await self.inner.add(
            self.key(key),
            deltas,
            expires_at=expires_at,
            limits=limits,
            claim=claim,
            release=release,
            absent=absent,
            drop=drop,
        )

    async def put_if(
        self,
        key: str,
        value: Mapping[str, Scalar],
        *,
        expected: Mapping[str, Scalar | None],
        expires_at: float | None = None,
    ) -> bool:
        return await self.inner.put_if(self.key(key), value, expected=expected, expires_at=expires_at)

    async def delete(self, key: str) -> None:
        await self.inner.delete(self.key(key))

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()
