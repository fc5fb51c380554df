"""One stored item as the stores that evaluate operations in Python keep it (memory, SQLite),
and the semantics of `add` and `put_if` for them, written once so the two cannot drift apart.
DynamoDB evaluates the same rules server-side (conditions); it replays `apply_add` locally
only to decide what a failed condition meant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tier_router.errors import StoreError
from tier_router.store.base import NO_MARKS, Marks, Scalar, Value, is_int


def is_expired(expires_at: int | float | None, now: float) -> bool:
    """An item whose expiry is `<= now` is absent for every operation."""
    return expires_at is not None and expires_at <= now


@dataclass(slots=True)
class Record:
    """One item: its fields and its expiry (whole epoch seconds, None for none)."""

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
    marks: Marks = NO_MARKS,
) -> tuple[Record, dict[str, int]] | None:
    """Compute the item after `add`, or None when a limit, a claim or a release refuses it."""
    current = record.live(now) if record else None
    fields: Value = dict(current.value) if current else {}
    if marks is not NO_MARKS:
        if any(name in fields for name in marks.required_absent()):
            return None
        if marks.release is not None and marks.release not in fields:
            return None
    new: dict[str, int] = {}
    for name, delta in deltas.items():
        old = fields.get(name, 0)
        if not is_int(old):
            raise StoreError(f"cannot add to field {name!r}: it holds a string")
        new[name] = old + delta
    if limits and any(new[name] > limit for name, limit in limits.items()):
        return None
    fields.update(new)
    if marks is not NO_MARKS:
        for name in marks.removed():
            fields.pop(name, None)
        if marks.claim is not None:
            fields[marks.claim[0]] = marks.claim[1]
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
