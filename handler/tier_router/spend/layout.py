"""A budget day's layout, pinned in the store by the day's first writer.

    spend:<day>#layout = {"shards": N, <carried fields>}

Which items hold a day's spend (`spend.shards.day_items`: one, or N shards) must not depend on
which rules file a process loaded: a `budgets.shards` change deployed mid-day, or two versions
with different counts serving at once during a deploy, would otherwise each enforce the cap on
their own items and together admit up to one extra cap per layout. So the first write of a day
pins the layout with one conditional put (`put_if`, only while the item is absent), and every
reader and writer of that day uses the pinned count; a new `shards` takes effect the next day.
Two processes racing to pin: one put lands, the other reads it back. A put that timed out may
have landed: the next try reads first, so a day never has two layouts.

The pin also carries what the day spent before it, from items the pinned layout does not read
(counted exactly once: the carry is written by the same conditional put as the pin, and never
changes after):

- the legacy budget items of routers before issue 18: `budget:<day>` (global `committed`,
  `spent`) and `budget:<day>:key:<key>` (a key's, read for the keys with a cap in the rules
  or keys file, every key of the keys file under `per_key_daily_usd`, and every key the day's
  ledger counted);
- the day's spend items of another shard count (`spend:<day>`, `spend:<day>#0..#99` outside
  the pinned ones), written before pinning existed.

Its fields have the day items' names (`committed`, `kc.<key>`, ledger counters, ...), so readers
add them to the shards' sums, and each shard enforces its share of `cap - carried` (never below
0): the carried spend and the shards' together stay under the cap. Holds in carried items are
in their `committed`: an old request still in flight is carried at its reservation (an upper
bound). Not seen: reservations an old version takes after the pin (its requests that start
during the deploy's overlap), and, on a table several regions share (`store.regional`), legacy
items (they were not in any region's namespace).

Cost: the layout is cached per day and process, so the hot path reads nothing more after its
first request of the day; that request reads the pin (1 read), and the day's first writer also
reads the candidate items (1 call: 102 keys, two BatchGetItem on DynamoDB; one more for the
legacy key items when there are any) and writes the pin (1 conditional write).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from tier_router.spend.shards import HOLD_PREFIX, MAX_SHARDS, day_items, scope_fields
from tier_router.store.base import Store, StoreError, StoreUnavailable, Value

LAYOUT_MARK = "#layout"
SHARDS_FIELD = "shards"
LEGACY_PREFIX = "budget:"
LEGACY_KEY_MARK = ":key:"
LEDGER_KEY_KINDS = ("key.", "key_n.")
"""The ledger's per-key fields: their value names are the key tags of keys that spent that day."""
_SKIPPED = (HOLD_PREFIX, "t.")
"""Hold and tombstone fields: a hold's amount is already in `committed`."""
_LEGACY_FIELDS = scope_fields(None)
"""A legacy budget item's fields (global or one key's): the global scope's names."""
PIN_TRIES = 3
_KEPT_DAYS = 4


@dataclass(frozen=True, slots=True)
class Layout:
    """One day's items and what the day spent before they were pinned."""

    day: str
    shards: int
    items: tuple[str, ...]
    carried: dict[str, int] = field(default_factory=dict)
    pinned: bool = True

    def room(self, field_name: str, cap: int) -> int:
        """What the shards together may commit of `cap` on `field_name` (`committed`, `kc.<key>`)."""
        return max(0, cap - self.carried.get(field_name, 0))


def carried_fields(value: Mapping[str, object]) -> dict[str, int]:
    """The integer fields of a day item that count spend (holds and tombstones left out)."""
    return {
        k: v
        for k, v in value.items()
        if isinstance(v, int) and not isinstance(v, bool) and k != SHARDS_FIELD and not k.startswith(_SKIPPED)
    }


def add_into(total: dict[str, int], deltas: Mapping[str, int]) -> None:
    for name, amount in deltas.items():
        total[name] = total.get(name, 0) + amount


def ledger_key_tags(values: Iterable[Mapping[str, object]]) -> set[str]:
    """The key tags the ledger counted in `values` (their `key.<tag>` / `key_n.<tag>` fields)."""
    return {name.partition(".")[2] for value in values for name in value if name.startswith(LEDGER_KEY_KINDS)}


class DayLayouts:
    """The pinned layout of each day, read once per day and process (shared by the budget guard
    and the ledger of one store)."""

    def __init__(
        self,
        store: Store,
        *,
        shards: int,
        expires: Callable[[str], float],
        prefix: str = "spend:",
        legacy_prefix: str | None = LEGACY_PREFIX,
    ) -> None:
        """`legacy_prefix`: the legacy budget items a pin carries (None: none, e.g. for budgets
        that kept their items' names, as judging's `judge:<day>`)."""
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be 1..{MAX_SHARDS} (one get_many reads them all)")
        self.store = store
        self.shards = shards
        self.capped_keys: set[str] = set()
        """Key tags whose legacy budget items a pin reads (besides those the ledger counted)."""
        self._expires = expires
        self._prefix = prefix
        self._legacy = legacy_prefix
        self._known: dict[str, Layout] = {}
        self._pinning: dict[str, asyncio.Future[Layout]] = {}

    def key(self, day: str) -> str:
        return f"{self._prefix}{day}{LAYOUT_MARK}"

    def cached(self, day: str) -> Layout | None:
        return self._known.get(day)

    async def pinned(self, day: str) -> Layout:
        """The day's layout, pinned (by this call, when nobody has yet). Raises StoreError."""
        known = self._known.get(day)
        if known is not None:
            return known
        task = self._pinning.get(day)
        if task is None:  # one pin per day and process, however many requests wait for it
            task = self._pinning[day] = asyncio.ensure_future(self._pin(day))
            task.add_done_callback(lambda _: self._pinning.pop(day, None))
        return await asyncio.shield(task)

    async def view(self, day: str) -> Layout:
        """The day's layout for a reader: the pinned one, or (none yet) the one a pin would write
        now — without writing it. Raises StoreError."""
        known = self._known.get(day) or await self._stored(day)
        if known is not None:
            return known
        return Layout(day, self.shards, self._items(day, self.shards), await self._carry(day), pinned=False)

    def layout_of(self, day: str, pin: Value | None) -> Layout:
        """The layout a reader of past days uses, from the day's pin item as read (batched by
        the caller): the pinned one, or (none) the configured count's items, with no carry."""
        if pin is not None:  # not remembered: a report of many days keeps the hot path's days
            return self._parse(day, pin)
        return Layout(day, self.shards, self._items(day, self.shards), pinned=False)

    def _items(self, day: str, shards: int) -> tuple[str, ...]:
        return tuple(day_items(self._prefix, day, shards))

    def _remember(self, layout: Layout) -> Layout:
        if len(self._known) >= _KEPT_DAYS:
            self._known.pop(min(self._known))
        self._known[layout.day] = layout
        return layout

    async def _stored(self, day: str) -> Layout | None:
        value = await self.store.get(self.key(day))
        return None if value is None else self._remember(self._parse(day, value))

    def _parse(self, day: str, value: Value) -> Layout:
        shards = value.get(SHARDS_FIELD)
        if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
            raise StoreError(f"{self.key(day)} holds no valid shard count ({SHARDS_FIELD}={shards!r})")
        return Layout(day, shards, self._items(day, shards), carried_fields(value))

    async def _pin(self, day: str) -> Layout:
        failure: StoreError | None = None
        for _ in range(PIN_TRIES):
            try:
                found = await self._stored(day)  # first: a pin of ours that timed out may have landed
                if found is not None:
                    return found
                value: Value = {SHARDS_FIELD: self.shards, **await self._carry(day)}
                if await self.store.put_if(
                    self.key(day), value, expected={SHARDS_FIELD: None}, expires_at=self._expires(day)
                ):
                    return self._remember(self._parse(day, value))
            except StoreUnavailable as exc:
                failure = exc
        if failure is not None:
            raise failure
        raise StoreError(f"{self.key(day)}: the pin was refused and is not readable")

    async def _carry(self, day: str) -> dict[str, int]:
        """What `day` spent outside the items a pin of `self.shards` reads (module docstring)."""
        own = set(self._items(day, self.shards))
        candidates = [*self._items(day, 1), *self._items(day, MAX_SHARDS)]
        legacy = None if self._legacy is None else f"{self._legacy}{day}"
        values = await self.store.get_many(
            [*candidates, *([legacy] if legacy else [])]
        )  # DynamoDB: 2 batches
        carried: dict[str, int] = {}
        for name in candidates:
            if name not in own and name in values:
                add_into(carried, carried_fields(values[name]))
        if legacy is None:
            return carried
        if legacy in values:
            add_into(carried, legacy_fields(values[legacy], None))
        tags = sorted(self.capped_keys | ledger_key_tags(values.get(n, {}) for n in candidates))
        keyed = await self.store.get_many([f"{legacy}{LEGACY_KEY_MARK}{tag}" for tag in tags]) if tags else {}
        for tag in tags:
            value = keyed.get(f"{legacy}{LEGACY_KEY_MARK}{tag}")
            if value is not None:
                add_into(carried, legacy_fields(value, tag))
        return carried


def legacy_fields(value: Mapping[str, object], tag: str | None) -> dict[str, int]:
    """A legacy budget item's spend as day-item fields: the global scope's, or key `tag`'s."""
    out = {}
    for name, field_name in zip(_LEGACY_FIELDS, scope_fields(tag), strict=True):
        amount = value.get(name)
        if isinstance(amount, int) and not isinstance(amount, bool) and amount:
            out[field_name] = amount
    return out
