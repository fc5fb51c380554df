"""The day items: one budget day's spend counters AND its budgets, spread over N shard items.

    spend:<day>            shards: 1 (the default)
    spend:<day>#0 .. #N-1  shards: N (`budgets.shards` in the rules file, 1..100)

Each shard item holds the ledger's counters (`spend.counters`: total, requests, per tier/model/
rule/key/arm) and the budget's fields (`spend.budget`, `spend.holds`):

    committed, spent, unsettled     the global budget (kept even without a global cap: pacing)
    kc.<key>, ks.<key>, ku.<key>    one router key's committed / spent / unsettled, for keys
                                    with a cap (`<key>` percent-encoded, as the ledger's)
    h.<expiry>.<id>[/<key>]         a hold (its key's fields move with the global ones)
    t.<expiry>.<id>[/<key>]         a tombstone

so a request's reservation is ONE conditional update (global and key cap in one condition) and
its settle ONE update (the hold released, both scopes adjusted, the ledger counted). Readers sum
the shards (one `get_many`, ≤ 100 keys). Writes spread over the shards; DynamoDB sustains about
1,000 write units per second per item, so N shards hold N× the write rate of one (each write is
billed by the item's size: see docs/scale.md).

A cap across shards: shard i enforces `share(cap, N, i)` (cap // N, the remainder spread over
the first shards: the shares sum to the cap exactly), so the sum of committed never passes the
cap. A reservation tries a shard picked at random, then the others in turn; it is refused only
when every shard refused. Under-use bound: at a refusal of a reservation of `w`, every shard had
at most `w - 1` µ$ of room under its share of (at least) one of the caps; when that is the same cap
on every shard (one cap applies, or the other has room everywhere), at most `N × (w - 1)` µ$
(< N × w) of that cap is unused — with 1 shard, < w, as before. A store error that certainly did
not apply (e.g. a full 400 KB item) passes the request to the next shard too. A refused
conditional write is billed on DynamoDB like a write: near a cap a request may cost N. A day's count is
pinned by its first writer (`spend.layout`): a `shards` change takes effect the next day.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from tier_router.spend.pricing import usd
from tier_router.store.base import Value

MAX_SHARDS = 100
"""One `get_many` (DynamoDB BatchGetItem: 100 keys) reads every shard."""
KEY_COMMITTED, KEY_SPENT, KEY_UNSETTLED = "kc.", "ks.", "ku."
HOLD_PREFIX = "h."
"""A hold's field (`spend.holds` imports it from here)."""
KEY_MARK = "/"
"""Separates a hold's id from its router key (`quote(..., safe='')` encodes "/")."""


def day_items(prefix: str, day: str, shards: int) -> list[str]:
    """The item keys of `day`: `spend:<day>` alone, or `spend:<day>#0 .. #N-1`."""
    base = f"{prefix}{day}"
    return [base] if shards == 1 else [f"{base}#{i}" for i in range(shards)]


def share(cap: int, shards: int, index: int) -> int:
    """Shard `index`'s part of `cap`: the parts sum to `cap` exactly."""
    base, rest = divmod(cap, shards)
    return base + (1 if index < rest else 0)


def visiting_order(shards: int, rng: random.Random | None = None) -> list[int]:
    """The shards a reservation tries: a random one first (load spreading), then the rest in
    turn (so a shard with room is found whenever one has it)."""
    if shards == 1:
        return [0]
    start = (rng or random).randrange(shards)
    return [(start + i) % shards for i in range(shards)]


def key_tag(router_key: str) -> str:
    """The router key as it appears in field names (percent-encoded; no dots' meaning lost)."""
    return quote(router_key, safe="")


def hold_key_tag(hold: str) -> str | None:
    """The router key tag a hold (or tombstone) also counts against, or None (global only)."""
    _, mark, tag = hold.rpartition(KEY_MARK)
    return tag if mark else None


def scope_deltas(tag: str | None, committed: int, spent: int) -> dict[str, int]:
    """Deltas for the global scope and, when `tag`, for that key's scope too (zeros dropped)."""
    deltas = {"committed": committed, "spent": spent}
    if tag is not None:
        deltas[KEY_COMMITTED + tag] = committed
        deltas[KEY_SPENT + tag] = spent
    return {k: v for k, v in deltas.items() if v != 0}


def unsettled_deltas(tag: str | None, amount: int) -> dict[str, int]:
    """An expired hold charged in full: spent and unsettled, on its scopes."""
    deltas = {"spent": amount, "unsettled": amount}
    if tag is not None:
        deltas[KEY_SPENT + tag] = amount
        deltas[KEY_UNSETTLED + tag] = amount
    return deltas


def summed(items: Iterable[Value], fields: Iterable[str]) -> dict[str, int]:
    """Each field summed over the shard items (absent or non-integer: 0)."""
    names = list(fields)
    total = dict.fromkeys(names, 0)
    for item in items:
        for name in names:
            value = item.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                total[name] += value
    return total


def scope_fields(tag: str | None) -> tuple[str, str, str]:
    """(committed, spent, unsettled) field names of the global scope or a key's."""
    if tag is None:
        return "committed", "spent", "unsettled"
    return KEY_COMMITTED + tag, KEY_SPENT + tag, KEY_UNSETTLED + tag


def holds_of(value: Mapping[str, object], prefix: str, tag: str | None) -> list[int]:
    """Amounts of the holds on `value` counted by a scope: every hold for the global scope,
    the key's own for a key (`tag`)."""
    out = []
    for name, amount in value.items():
        if not name.startswith(prefix) or not isinstance(amount, int):
            continue
        if tag is None or hold_key_tag(name) == tag:
            out.append(amount)
    return out


def spent_fields(value: Mapping[str, object]) -> dict[str, int]:
    """`spent` and the keys' `ks.<key>`: what pacing reads of a day item."""
    return {
        k: v
        for k, v in value.items()
        if (k == "spent" or k.startswith(KEY_SPENT)) and isinstance(v, int) and not isinstance(v, bool)
    }


def scope_status(items: Iterable[Value], tag: str | None, cap: int, fraction: float) -> dict[str, object]:
    """One scope's line of `BudgetGuard.status`, summed over the shard items."""
    values = list(items)
    committed, spent, unsettled = scope_fields(tag)
    sums = summed(values, (committed, spent, unsettled))
    holds = [amount for value in values for amount in holds_of(value, HOLD_PREFIX, tag)]
    return {
        "cap_usd": usd(cap),
        "committed_usd": usd(sums[committed]),
        "spent_usd": usd(sums[spent]),
        "pace_usd": usd(math.floor(cap * fraction)),
        "in_flight": len(holds),
        "held_usd": usd(sum(holds)),
        "unsettled_usd": usd(sums[unsettled]),
    }


def no_room(values: Mapping[str, Value], items: list[str], field: str, cap: int, amount: int) -> bool:
    """True when no shard item has room for `amount` more of `field` under its share of `cap`."""
    for index, item in enumerate(items):
        used = summed([values.get(item, {})], [field])[field]
        if used + amount <= share(cap, len(items), index):
            return False
    return True
