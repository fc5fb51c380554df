"""SQLite `add` as ONE statement (`INSERT … ON CONFLICT DO UPDATE … RETURNING`): the same result
as reading the item, `store.record.apply_add` and writing it back, in one round trip — for the
adds it can compute exactly (`fits_one_statement`); for the rest, and whenever the stored item
is not what it can handle, it writes nothing and says so, and the caller runs `apply_add`.

Why: the SQLite writer thread hands the GIL to the busy event loop around every statement it
runs; alone in its batch, such an add needs no BEGIN, SELECT or COMMIT (a statement outside a
transaction commits itself before it returns), so one statement replaces four.
"""

from __future__ import annotations

import functools
import json
import sqlite3

from tier_router.store.base import NO_MARKS, Marks

SAFE_INT = 1 << 62
"""|old| and |delta| below this: their sum is exact in SQLite's 64-bit integers."""


def fits_one_statement(deltas: dict[str, int], limits: dict[str, int], marks: Marks) -> bool:
    """An `add` without marks, on field names a quoted JSON path can hold, with small numbers,
    whose limits a fresh item (just the deltas) meets: `upsert_add` computes it exactly."""
    if marks is not NO_MARKS:
        return False
    for name, delta in deltas.items():
        if '"' in name or "\\" in name or not -SAFE_INT < delta < SAFE_INT:
            return False
    return all(-SAFE_INT < limit < SAFE_INT and deltas[name] <= limit for name, limit in limits.items())


@functools.lru_cache(maxsize=64)
def upsert_sql(fields: int) -> str:
    """The statement for `fields` delta fields. Parameters: ?1 key, ?2 the fresh item (the deltas,
    JSON), ?3 expiry, ?4 now; per field i: ?(5+3i) its JSON path, its delta, its limit (NULL for
    none). A live item gets the deltas added and keeps its other fields (and its expiry unless one
    is given); an absent or expired one becomes the fresh item. A live item is updated only when
    each field is absent or holds a small integer and each limit holds: otherwise no row comes
    back, nothing is written, and `apply_add` decides (a refusal, or StoreError on a str field)."""
    live = "(kv.expires_at IS NULL OR kv.expires_at > ?4)"
    sets, checks, news = [], [], []
    for i in range(fields):
        path, delta, limit = f"?{5 + 3 * i}", f"?{6 + 3 * i}", f"?{7 + 3 * i}"
        new = f"coalesce(json_extract(kv.v, {path}), 0) + {delta}"
        sets.append(f"{path}, {new}")
        checks.append(
            f"(json_type(kv.v, {path}) IS NULL OR json_type(kv.v, {path}) = 'integer'"
            f" AND abs(json_extract(kv.v, {path})) < {SAFE_INT})"
            f" AND ({limit} IS NULL OR {new} <= {limit})"
        )
        news.append(f"json_extract(v, {path})")
    return (
        "INSERT INTO kv (k, v, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT (k) DO UPDATE SET"  # noqa: S608 - only placeholders and fixed text
        f" v = CASE WHEN {live} THEN json_set(kv.v, {', '.join(sets)}) ELSE excluded.v END,"
        f" expires_at = CASE WHEN {live} THEN coalesce(?3, kv.expires_at) ELSE ?3 END"
        f" WHERE NOT {live} OR ({' AND '.join(checks)})"
        f" RETURNING {', '.join(news)}"
    )


def upsert_add(
    conn: sqlite3.Connection,
    key: str,
    deltas: dict[str, int],
    limits: dict[str, int],
    expires_at: int | None,
    now: float,
) -> dict[str, int] | None:
    """Run the `add` (only for `fits_one_statement`): the new values of the delta fields, or None
    when it wrote nothing and `apply_add` must decide. Outside a transaction it has committed
    when it returns (the cursor is read to its end)."""
    params: list[object] = [key, json.dumps(deltas, separators=(",", ":")), expires_at, now]
    for name, delta in deltas.items():
        params += (f'$."{name}"', delta, limits.get(name))
    rows = conn.execute(upsert_sql(len(deltas)), params).fetchall()
    return dict(zip(deltas, rows[0], strict=True)) if rows else None
