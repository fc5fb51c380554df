"""The key-value state adapter: one small async interface, three implementations.

Budgets, breakers and leases all need the same few things from shared state: read several
keys in one round trip, increment counters atomically (optionally under a ceiling), and
write conditionally. `Store` is exactly that and nothing more, so the in-memory, SQLite
and DynamoDB stores can be swapped by URL (see `tier_router.store.factory`) and proven
equivalent by one contract test suite.

Data model:
- a key names one item; an item is a small flat dict of `int` and `str` fields
  (money is integer micro-dollars, so no floats ever);
- an item may carry an expiry (`expires_at`, unix epoch seconds). Stores round it UP to a
  whole second, because DynamoDB's TTL works in whole seconds and the three stores must
  agree. An item whose expiry is `<= now` is absent for every operation, including
  conditions, even while it still physically exists (DynamoDB deletes it up to ~2 days
  late, SQLite and memory purge lazily);
- `pk` and `expires_at` are reserved field names (they are DynamoDB attributes).

The pure helpers at the bottom hold the semantics of `add` and `put_if` for the stores
that evaluate them in Python (memory, SQLite), so those two cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Scalar = int | str
Value = dict[str, Scalar]

RESERVED_FIELDS = frozenset({"pk", "expires_at"})
MAX_KEY_BYTES = 2048  # DynamoDB's partition-key limit; enforced everywhere so stores agree.


class StoreError(Exception):
    """The store refused or failed an operation. Messages never contain credentials."""


class StoreUnavailable(StoreError):
    """The store could not be reached (or stayed throttled/locked) after retries.

    Callers on the hot path may choose to fail open on this; `StoreError` proper means a
    bug or misconfiguration (missing table, type mismatch) that retrying will not fix.
    """


@runtime_checkable
class Store(Protocol):
    """Async key-value state shared by every copy of the gateway.

    All methods are coroutines and never block the event loop. Values returned are fresh
    dicts the caller may mutate.
    """

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        """Read many items in ONE round trip (up to 100 keys on DynamoDB).

        Absent and expired keys are omitted from the result; duplicates are fine.
        """
        ...

    async def get(self, key: str) -> Value | None:
        """Read one item; None when absent or expired."""
        ...

    async def put(self, key: str, value: Mapping[str, Scalar], *, expires_at: float | None = None) -> None:
        """Replace the whole item (fields not in `value` are dropped)."""
        ...

    async def add(
        self,
        key: str,
        deltas: Mapping[str, int],
        *,
        expires_at: float | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        """Atomically add `deltas` to integer fields (absent fields start at 0).

        Returns the new values of the fields in `deltas`. With `limits`, the add happens
        only if every limited field's NEW value would be `<= limit`; otherwise nothing
        changes and the result is None (that is how budget reservations refuse).
        Other fields of the item are kept. An expired item is treated as absent: it is
        replaced by a fresh item holding just the deltas. `expires_at`, when given,
        becomes the item's expiry; when omitted a live item keeps its expiry and a new
        item has none. Adding to a `str` field raises StoreError.
        """
        ...

    async def put_if(
        self,
        key: str,
        value: Mapping[str, Scalar],
        *,
        expected: Mapping[str, Scalar | None],
        expires_at: float | None = None,
    ) -> bool:
        """Replace the whole item only if each `expected` field currently equals its value.

        `None` means "field absent (or the whole item absent)". Expired items count as
        absent. Returns False, changing nothing, when the condition does not hold. An
        empty `expected` makes this an unconditional put. A put with a past `expires_at`
        is a conditional delete.
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove the item; deleting an absent key is not an error."""
        ...

    async def ping(self) -> None:
        """Readiness check: one cheap round trip. Raises StoreUnavailable/StoreError."""
        ...

    async def aclose(self) -> None:
        """Release connections/threads. Idempotent."""
        ...


# --- validation shared by every store -------------------------------------------------


def check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"store keys are non-empty strings, got {key!r}")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"store key longer than {MAX_KEY_BYTES} bytes: {key[:40]!r}...")
    return key


def _check_field(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"field names are non-empty strings, got {name!r}")
    if name in RESERVED_FIELDS:
        raise ValueError(f"field name {name!r} is reserved ({', '.join(sorted(RESERVED_FIELDS))})")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # True would silently become 1


def check_value(value: Mapping[str, Scalar]) -> Value:
    out: Value = {}
    for name, v in value.items():
        _check_field(name)
        if not (_is_int(v) or isinstance(v, str)):
            raise ValueError(f"field {name!r}: values are int or str, got {type(v).__name__}")
        out[name] = v
    return out


def check_deltas(deltas: Mapping[str, int], limits: Mapping[str, int] | None) -> None:
    if not deltas:
        raise ValueError("add() needs at least one field to increment")
    for name, d in deltas.items():
        _check_field(name)
        if not _is_int(d):
            raise ValueError(f"delta for {name!r} must be an int, got {type(d).__name__}")
    for name, limit in (limits or {}).items():
        if name not in deltas:
            raise ValueError(f"limit on {name!r}, which is not among the fields being added")
        if not _is_int(limit):
            raise ValueError(f"limit for {name!r} must be an int, got {type(limit).__name__}")


def check_expected(expected: Mapping[str, Scalar | None]) -> None:
    for name, v in expected.items():
        _check_field(name)
        if v is not None and not (_is_int(v) or isinstance(v, str)):
            raise ValueError(f"expected {name!r}: int, str or None, got {type(v).__name__}")


def normalize_expiry(expires_at: float | None) -> int | None:
    """Round an expiry UP to whole epoch seconds (DynamoDB TTL granularity)."""
    if expires_at is None:
        return None
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | float) or math.isnan(expires_at):
        raise ValueError(f"expires_at is unix epoch seconds, got {expires_at!r}")
    return math.ceil(expires_at)


def is_expired(expires_at: int | float | None, now: float) -> bool:
    return expires_at is not None and expires_at <= now


# --- semantics for stores that evaluate in Python (memory, SQLite) ----------------------


@dataclass(slots=True)
class Record:
    """One stored item as memory/SQLite keep it."""

    value: Value
    expires_at: float | None = None

    def live(self, now: float) -> Record | None:
        return None if is_expired(self.expires_at, now) else self


def apply_add(
    record: Record | None,
    deltas: Mapping[str, int],
    limits: Mapping[str, int] | None,
    expires_at: float | None,
    now: float,
) -> tuple[Record, dict[str, int]] | None:
    """Compute the item after `add`, or None when a limit refuses it."""
    current = record.live(now) if record else None
    fields: Value = dict(current.value) if current else {}
    new: dict[str, int] = {}
    for name, delta in deltas.items():
        old = fields.get(name, 0)
        if not _is_int(old):
            raise StoreError(f"cannot add to field {name!r}: it holds a string")
        new[name] = old + delta
    if limits and any(new[name] > limit for name, limit in limits.items()):
        return None
    fields.update(new)
    if expires_at is None and current is not None:
        expires_at = current.expires_at
    return Record(fields, expires_at), new


def matches_expected(record: Record | None, expected: Mapping[str, Scalar | None], now: float) -> bool:
    """True when every expected field equals the live item's (None = absent)."""
    current = record.live(now) if record else None
    fields = current.value if current else {}
    for name, want in expected.items():
        have = fields.get(name)
        if want is None:
            if have is not None:
                return False
        elif type(have) is not type(want) or have != want:
            return False
    return True
