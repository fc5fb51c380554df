"""The key-value state store: one small async interface, three backends, one base class.

Budgets, breakers and leases all need the same few things from shared state: read several
keys in one round trip, increment counters atomically (optionally under a ceiling), and
write conditionally. `Store` is exactly that and nothing more, so the in-memory, SQLite
and DynamoDB stores can be swapped by URL (see `tier_router.store.factory`) and proven
equivalent by one contract test suite.

`Store` is a template (as Powertools' `BasePersistenceLayer` is): its public methods are the
interface every consumer calls, and they do once, for every backend, what does not depend
on the backend — validate keys, values, deltas, limits and expectations; round the expiry;
apply the deadline (`deadline_s`: a call slower than that is `StoreUnavailable`, so a hung
store never hangs a request); log a failing store once per outage (then at DEBUG until a
call succeeds), so the consumers that fail open need not. Then they call the backend's
primitives (`_get_many`, `_put`, `_add`, `_put_if`, `_delete`, and optionally `_get`,
`_ping`, `_aclose`), which receive only valid, normalized arguments.

Data model:
- a key names one item; an item is a small flat dict of `int` and `str` fields
  (money is integer micro-dollars, so no floats ever);
- an item may carry an expiry (`expires_at`, unix epoch seconds). Stores round it UP to a
  whole second, because DynamoDB's TTL works in whole seconds and the three stores must
  agree. An item whose expiry is `<= now` is absent for every operation, including
  conditions, even while it still physically exists (DynamoDB deletes it up to ~2 days
  late, SQLite and memory purge lazily);
- `pk` and `expires_at` are reserved field names (they are DynamoDB attributes).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tier_router.errors import StoreError, StoreUnavailable

__all__ = [
    "MAX_KEY_BYTES",
    "NO_MARKS",
    "RESERVED_FIELDS",
    "Marks",
    "Scalar",
    "Store",
    "StoreError",  # re-exported: defined in tier_router.errors
    "StoreUnavailable",
    "Value",
    "check_value",
]

log = logging.getLogger("tier_router.store")
T = TypeVar("T")

Scalar = int | str
Value = dict[str, Scalar]

RESERVED_FIELDS = frozenset({"pk", "expires_at"})
MAX_KEY_BYTES = 2048  # DynamoDB's partition-key limit; enforced everywhere so stores agree.


class Store:
    """Async key-value state shared by every copy of the gateway (module doc).

    All methods are coroutines and never block the event loop. Values returned are fresh
    dicts the caller may mutate. Invalid arguments raise ValueError before any I/O.
    """

    def __init__(self, *, deadline_s: float | None = None) -> None:
        self.deadline_s = deadline_s
        self._failing = False
        self._closed = False

    # --- the interface --------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        """Read many items in ONE round trip (up to 100 keys on DynamoDB).

        Absent and expired keys are omitted from the result; duplicates are fine.
        """
        unique = list(dict.fromkeys(check_key(k) for k in keys))
        if not unique:
            return {}
        return await self._run("get_many", self._get_many, unique)

    async def get(self, key: str) -> Value | None:
        """Read one item; None when absent or expired."""
        return await self._run("get", self._get, check_key(key))

    async def put(self, key: str, value: Mapping[str, Scalar], *, expires_at: float | None = None) -> None:
        """Replace the whole item (fields not in `value` are dropped)."""
        await self._run("put", self._put, check_key(key), check_value(value), normalize_expiry(expires_at))

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
        """Atomically add `deltas` to integer fields (absent fields start at 0).

        Returns the new values of the fields in `deltas`. With `limits`, the add happens
        only if every limited field's NEW value would be `<= limit`; otherwise nothing
        changes and the result is None (that is how budget reservations refuse).
        Other fields of the item are kept. An expired item is treated as absent: it is
        replaced by a fresh item holding just the deltas. `expires_at`, when given,
        becomes the item's expiry; when omitted a live item keeps its expiry and a new
        item has none. Adding to a `str` field raises StoreError.

        Idempotent adds (budget reservations keyed by request), all in the same write:
        `claim=(field, value)` adds only if `field` is absent, and sets it; `release=field`
        adds only if `field` is present, and removes it; `absent` names more fields that
        must be absent; `drop` fields are removed if there. A condition failing changes
        nothing and returns None, so a claim or a release applied twice counts once.
        """
        check_key(key)
        check_deltas(deltas, limits)
        marks = check_marks(deltas, claim, release, absent, drop)
        expiry = normalize_expiry(expires_at)
        return await self._run("add", self._add, key, dict(deltas), dict(limits or {}), expiry, marks)

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
        check_key(key)
        check_expected(expected)
        item, expiry = check_value(value), normalize_expiry(expires_at)
        return await self._run("put_if", self._put_if, key, item, expiry, dict(expected))

    async def delete(self, key: str) -> None:
        """Remove the item; deleting an absent key is not an error."""
        await self._run("delete", self._delete, check_key(key))

    async def ping(self) -> None:
        """Readiness check: one cheap round trip. Raises StoreUnavailable/StoreError."""
        await self._run("ping", self._ping)

    async def aclose(self) -> None:
        """Release connections/threads. Idempotent."""
        if not self._closed:
            self._closed = True
            await self._aclose()

    # --- what a backend fills in (arguments are valid and normalized) ---------------------

    async def _get_many(self, keys: list[str]) -> dict[str, Value]:
        """`keys`: unique, at least one."""
        raise NotImplementedError

    async def _get(self, key: str) -> Value | None:
        return (await self._get_many([key])).get(key)

    async def _put(self, key: str, value: Value, expires_at: int | None) -> None:
        raise NotImplementedError

    async def _add(
        self, key: str, deltas: dict[str, int], limits: dict[str, int], expires_at: int | None, marks: Marks
    ) -> dict[str, int] | None:
        """`limits` ({} for none) only names fields among `deltas`; `marks` name other fields."""
        raise NotImplementedError

    async def _put_if(
        self, key: str, value: Value, expires_at: int | None, expected: dict[str, Scalar | None]
    ) -> bool:
        raise NotImplementedError

    async def _delete(self, key: str) -> None:
        raise NotImplementedError

    async def _ping(self) -> None:
        return None

    async def _aclose(self) -> None:
        return None

    # --- deadline and outage log ----------------------------------------------------------

    async def _run(self, op: str, primitive: Callable[..., Awaitable[T]], *args: object) -> T:
        try:
            if self.deadline_s is None:
                result = await primitive(*args)
            else:
                async with asyncio.timeout(self.deadline_s):
                    result = await primitive(*args)
        except TimeoutError:
            if self.deadline_s is None:
                raise
            failure = StoreUnavailable(f"store {op} took longer than {self.deadline_s:g}s")
            self._failed(op, failure)
            raise failure from None
        except StoreError as exc:
            self._failed(op, exc)
            raise
        if self._failing:
            self._failing = False
            log.info("state store %r works again", self)
        return result

    def _failed(self, op: str, exc: StoreError) -> None:
        """WARNING for the first failure of an outage, DEBUG for the rest of it."""
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        log.log(level, "state store %r failed (%s): %s", self, op, exc)


# --- validation, done by `Store` for every backend ---------------------------------------


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


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # True would silently become 1


def check_value(value: Mapping[str, Scalar]) -> Value:
    out: Value = {}
    for name, v in value.items():
        _check_field(name)
        if not (is_int(v) or isinstance(v, str)):
            raise ValueError(f"field {name!r}: values are int or str, got {type(v).__name__}")
        out[name] = v
    return out


def check_deltas(deltas: Mapping[str, int], limits: Mapping[str, int] | None) -> None:
    if not deltas:
        raise ValueError("add() needs at least one field to increment")
    for name, d in deltas.items():
        _check_field(name)
        if not is_int(d):
            raise ValueError(f"delta for {name!r} must be an int, got {type(d).__name__}")
    for name, limit in (limits or {}).items():
        if name not in deltas:
            raise ValueError(f"limit on {name!r}, which is not among the fields being added")
        if not is_int(limit):
            raise ValueError(f"limit for {name!r} must be an int, got {type(limit).__name__}")


@dataclass(frozen=True, slots=True)
class Marks:
    """`add`'s idempotency conditions, validated: set `claim` (a field absent before), remove
    `release` (a field present before), require `absent` fields absent, remove `drop`."""

    claim: tuple[str, Scalar] | None = None
    release: str | None = None
    absent: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()

    def required_absent(self) -> tuple[str, ...]:
        return self.absent if self.claim is None else (self.claim[0], *self.absent)

    def removed(self) -> tuple[str, ...]:
        return self.drop if self.release is None else (self.release, *self.drop)


NO_MARKS = Marks()


def check_marks(
    deltas: Mapping[str, int],
    claim: tuple[str, Scalar] | None,
    release: str | None,
    absent: Sequence[str] = (),
    drop: Sequence[str] = (),
) -> Marks:
    if claim is None and release is None and not absent and not drop:
        return NO_MARKS
    names: list[str] = []
    if claim is not None:
        if not isinstance(claim, tuple) or len(claim) != 2:
            raise ValueError(f"claim is a (field, value) pair, got {claim!r}")
        check_value({claim[0]: claim[1]})
        names.append(claim[0])
    if release is not None:
        _check_field(release)
        names.append(release)
    for group in (absent, drop):
        if isinstance(group, str):
            raise ValueError(f"absent/drop take a sequence of field names, got {group!r}")
        for name in group:
            _check_field(name)
            names.append(name)
    if len(set(names)) != len(names):
        raise ValueError(f"a field may be claimed, released, required absent or dropped once: {names}")
    clash = set(names) & set(deltas)
    if clash:
        raise ValueError(f"the claimed/released field(s) {sorted(clash)} cannot also be added to")
    return Marks(claim, release, tuple(absent), tuple(drop))


def check_expected(expected: Mapping[str, Scalar | None]) -> None:
    for name, v in expected.items():
        _check_field(name)
        if v is not None and not (is_int(v) or isinstance(v, str)):
            raise ValueError(f"expected {name!r}: int, str or None, got {type(v).__name__}")


def normalize_expiry(expires_at: float | None) -> int | None:
    """Round an expiry UP to whole epoch seconds (DynamoDB TTL granularity)."""
    if expires_at is None:
        return None
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | float) or math.isnan(expires_at):
        raise ValueError(f"expires_at is unix epoch seconds, got {expires_at!r}")
    return math.ceil(expires_at)
