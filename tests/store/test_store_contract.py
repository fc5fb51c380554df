"""The Store contract: every test here runs unchanged against memory, SQLite and DynamoDB
(moto on 127.0.0.1). Time moves through the injected clock — DynamoDB conditions use the
client's `now`, so expiry is exercised without sleeping."""

from __future__ import annotations

import anyio
import pytest
from tier_router.store.base import Store, StoreError

from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio


# --- get / put / get_many ---------------------------------------------------------------


async def test_put_get_round_trip_keeps_types(store: Store) -> None:
    value = {"spent": 1_250_000, "neg": -7, "big": 10**18, "name": "gpt-4o ☃", "empty": "", "zero": 0}
    await store.put("k", value)
    got = await store.get("k")
    assert got == value
    assert all(type(got[f]) is type(v) for f, v in value.items())


async def test_get_missing_is_none(store: Store) -> None:
    assert await store.get("nope") is None


async def test_put_replaces_the_whole_item(store: Store) -> None:
    await store.put("k", {"a": 1, "b": "x"})
    await store.put("k", {"c": 2})
    assert await store.get("k") == {"c": 2}


async def test_get_many_returns_present_and_omits_missing(store: Store) -> None:
    await store.put("a", {"n": 1})
    await store.put("b", {"s": "two"})
    assert await store.get_many(["a", "missing", "b", "a"]) == {"a": {"n": 1}, "b": {"s": "two"}}
    assert await store.get_many([]) == {}


async def test_get_many_beyond_one_batch(store: Store) -> None:
    keys = [f"key-{i}" for i in range(150)]  # DynamoDB's BatchGetItem takes 100 per call
    async with anyio.create_task_group() as tg:
        for i, key in enumerate(keys):
            tg.start_soon(store.put, key, {"i": i})
    got = await store.get_many([*keys, "absent"])
    assert got == {key: {"i": i} for i, key in enumerate(keys)}


async def test_returned_values_are_copies(store: Store) -> None:
    await store.put("k", {"n": 1})
    got = await store.get("k")
    assert got is not None
    got["n"] = 99
    assert await store.get("k") == {"n": 1}


# --- expiry -----------------------------------------------------------------------------


async def test_expired_items_are_absent_everywhere(store: Store, clock: FakeClock) -> None:
    await store.put("old", {"n": 1}, expires_at=clock.now - 10)
    await store.put("live", {"n": 2}, expires_at=clock.now + 60)
    assert await store.get("old") is None
    assert await store.get_many(["old", "live"]) == {"live": {"n": 2}}


async def test_item_expires_when_clock_passes_expiry(store: Store, clock: FakeClock) -> None:
    await store.put("k", {"n": 1}, expires_at=clock.now + 30)
    clock.advance(29)
    assert await store.get("k") == {"n": 1}
    clock.advance(1)  # expires_at <= now means expired
    assert await store.get("k") is None
    assert await store.get_many(["k"]) == {}


async def test_fractional_expiry_rounds_up_to_whole_seconds(store: Store, clock: FakeClock) -> None:
    await store.put("k", {"n": 1}, expires_at=clock.now + 0.2)
    clock.advance(0.5)
    assert await store.get("k") == {"n": 1}  # stored as now+1 (DynamoDB TTL granularity)
    clock.advance(0.5)
    assert await store.get("k") is None


# --- add --------------------------------------------------------------------------------


async def test_add_creates_fields_at_zero_and_returns_new_values(store: Store) -> None:
    assert await store.add("c", {"requests": 1, "spent": 250}) == {"requests": 1, "spent": 250}
    assert await store.add("c", {"spent": 100}) == {"spent": 350}
    assert await store.add("c", {"spent": -50, "refunds": 1}) == {"spent": 300, "refunds": 1}
    assert await store.get("c") == {"requests": 1, "spent": 300, "refunds": 1}


async def test_add_keeps_other_fields(store: Store) -> None:
    await store.put("c", {"owner": "me", "n": 5})
    assert await store.add("c", {"n": 2}) == {"n": 7}
    assert await store.get("c") == {"owner": "me", "n": 7}


async def test_add_with_limits_applies_up_to_and_including_the_limit(store: Store) -> None:
    assert await store.add("b", {"spent": 600}, limits={"spent": 1000}) == {"spent": 600}
    assert await store.add("b", {"spent": 400}, limits={"spent": 1000}) == {"spent": 1000}


async def test_add_with_limits_refuses_and_changes_nothing(store: Store) -> None:
    await store.put("b", {"spent": 900, "calls": 3})
    refused = await store.add("b", {"spent": 200, "calls": 1}, limits={"spent": 1000, "calls": 10})
    assert refused is None
    assert await store.get("b") == {"spent": 900, "calls": 3}


async def test_add_with_one_limit_failing_refuses_every_field(store: Store) -> None:
    await store.put("b", {"spent": 10, "calls": 9})
    assert await store.add("b", {"spent": 1, "calls": 1}, limits={"spent": 1000, "calls": 9}) is None
    assert await store.get("b") == {"spent": 10, "calls": 9}


async def test_add_with_delta_above_limit_on_absent_item_refuses(store: Store) -> None:
    assert await store.add("b", {"spent": 1001}, limits={"spent": 1000}) is None
    assert await store.get("b") is None


async def test_add_with_limits_from_negative_balance(store: Store) -> None:
    await store.put("b", {"spent": -500})  # e.g. a credit
    assert await store.add("b", {"spent": 1200}, limits={"spent": 1000}) == {"spent": 700}


async def test_add_on_expired_item_starts_fresh(store: Store, clock: FakeClock) -> None:
    await store.put("w", {"spent": 900, "note": "old window"}, expires_at=clock.now - 1)
    assert await store.add("w", {"spent": 5}, expires_at=clock.now + 60) == {"spent": 5}
    assert await store.get("w") == {"spent": 5}
    clock.advance(60)
    assert await store.get("w") is None  # the new expiry applies


async def test_add_on_expired_item_respects_limits_from_zero(store: Store, clock: FakeClock) -> None:
    await store.put("w", {"spent": 999}, expires_at=clock.now - 1)
    assert await store.add("w", {"spent": 10}, limits={"spent": 100}) == {"spent": 10}
    await store.put("x", {"spent": 0}, expires_at=clock.now - 1)
    assert await store.add("x", {"spent": 101}, limits={"spent": 100}) is None


async def test_add_keeps_a_live_items_expiry_unless_given(store: Store, clock: FakeClock) -> None:
    await store.put("w", {"n": 1}, expires_at=clock.now + 10)
    assert await store.add("w", {"n": 1}) == {"n": 2}
    clock.advance(10)
    assert await store.get("w") is None
    await store.put("v", {"n": 1}, expires_at=clock.now + 10)
    await store.add("v", {"n": 1}, expires_at=clock.now + 100)
    clock.advance(50)
    assert await store.get("v") == {"n": 2}


async def test_add_to_a_string_field_is_an_error(store: Store) -> None:
    await store.put("k", {"name": "x"})
    with pytest.raises(StoreError):
        await store.add("k", {"name": 1})
    assert await store.get("k") == {"name": "x"}


async def test_concurrent_adds_in_one_process_are_exact(store: Store) -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(store.add, "c", {"n": 1})
    assert await store.get("c") == {"n": 100}


# --- claim / release: idempotent adds (budget reservations keyed by request) -------------


async def test_claim_adds_once_and_sets_the_field(store: Store) -> None:
    first = await store.add("b", {"committed": 500}, limits={"committed": 1000}, claim=("h.9.req-1", 500))
    assert first == {"committed": 500}
    assert await store.get("b") == {"committed": 500, "h.9.req-1": 500}
    # The same claim again (a retried or late-landing write) changes nothing.
    assert await store.add("b", {"committed": 500}, claim=("h.9.req-1", 500)) is None
    assert await store.get("b") == {"committed": 500, "h.9.req-1": 500}


async def test_claim_still_obeys_limits(store: Store) -> None:
    await store.add("b", {"committed": 900})
    assert await store.add("b", {"committed": 200}, limits={"committed": 1000}, claim=("h.1.r", 200)) is None
    assert await store.get("b") == {"committed": 900}


async def test_release_applies_once_and_removes_the_field(store: Store) -> None:
    await store.add("b", {"committed": 500}, claim=("h.9.req-1", 500))
    settled = await store.add("b", {"committed": -300, "spent": 200}, release="h.9.req-1")
    assert settled == {"committed": 200, "spent": 200}
    assert await store.get("b") == {"committed": 200, "spent": 200}
    # Released twice (a retried settle, two sweepers): the second finds no field.
    assert await store.add("b", {"committed": -300, "spent": 200}, release="h.9.req-1") is None
    assert await store.get("b") == {"committed": 200, "spent": 200}


async def test_release_of_an_absent_field_or_item_changes_nothing(store: Store) -> None:
    assert await store.add("none", {"committed": -5}, release="h.1.r") is None
    assert await store.get("none") is None
    await store.put("b", {"committed": 7})
    assert await store.add("b", {"committed": -5}, release="h.1.r") is None
    assert await store.get("b") == {"committed": 7}


async def test_claim_on_an_expired_item_starts_fresh(store: Store, clock: FakeClock) -> None:
    await store.add("b", {"committed": 5}, expires_at=clock.now + 10, claim=("h.1.old", 5))
    clock.advance(11)
    new = await store.add("b", {"committed": 3}, expires_at=clock.now + 10, claim=("h.1.old", 3))
    assert new == {"committed": 3}
    assert await store.get("b") == {"committed": 3, "h.1.old": 3}
    clock.advance(11)
    assert await store.add("b", {"committed": -3}, release="h.1.old") is None  # expired: absent


async def test_concurrent_claims_and_releases_are_exact(store: Store) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(lambda i=i: store.add("b", {"committed": 10}, claim=(f"h.1.r{i % 20}", 10)))
    assert (await store.get("b") or {}).get("committed") == 200  # 20 distinct claims, each once
    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(lambda i=i: store.add("b", {"committed": -10}, release=f"h.1.r{i % 20}"))
    assert await store.get("b") == {"committed": 0}


async def test_claim_release_absent_and_drop_in_one_write(store: Store) -> None:
    await store.add("b", {"committed": 5}, claim=("h.1.r", 5))
    await store.put("c", {"t.1.x": 1, "t.1.y": 1, "n": 0})
    # Release one field and claim another at once (a settle that leaves a tombstone).
    assert await store.add("b", {"spent": 2}, release="h.1.r", claim=("t.1.r", 1)) == {"spent": 2}
    assert await store.get("b") == {"committed": 5, "spent": 2, "t.1.r": 1}
    # A claim refused because another field is present (a late hold after its tombstone).
    assert await store.add("b", {"committed": 5}, claim=("h.1.r", 5), absent=["t.1.r"]) is None
    assert await store.get("b") == {"committed": 5, "spent": 2, "t.1.r": 1}
    # Dropped fields go whether or not they are there; nothing is required of them.
    assert await store.add("c", {"n": 1}, drop=["t.1.x", "t.1.y", "t.1.z"]) == {"n": 1}
    assert await store.get("c") == {"n": 1}


# --- put_if -----------------------------------------------------------------------------


async def test_put_if_absent(store: Store) -> None:
    assert await store.put_if("lease", {"owner": "a"}, expected={"owner": None}) is True
    assert await store.put_if("lease", {"owner": "b"}, expected={"owner": None}) is False
    assert await store.get("lease") == {"owner": "a"}


async def test_put_if_expected_value(store: Store) -> None:
    await store.put("k", {"owner": "a", "epoch": 1})
    assert await store.put_if("k", {"owner": "b", "epoch": 2}, expected={"owner": "b"}) is False
    assert await store.put_if("k", {"owner": "b", "epoch": 2}, expected={"owner": "a", "epoch": 2}) is False
    assert await store.put_if("k", {"owner": "b", "epoch": 2}, expected={"owner": "a", "epoch": 1}) is True
    assert await store.get("k") == {"owner": "b", "epoch": 2}


async def test_put_if_compares_types_strictly(store: Store) -> None:
    await store.put("k", {"v": 1})
    assert await store.put_if("k", {"v": 2}, expected={"v": "1"}) is False
    assert await store.get("k") == {"v": 1}


async def test_put_if_none_means_field_absent_on_a_live_item(store: Store) -> None:
    await store.put("k", {"other": 1})
    assert await store.put_if("k", {"owner": "a"}, expected={"owner": None}) is True
    assert await store.get("k") == {"owner": "a"}


async def test_put_if_on_missing_item_with_expected_value_fails(store: Store) -> None:
    assert await store.put_if("k", {"owner": "a"}, expected={"owner": "x"}) is False
    assert await store.get("k") is None


async def test_put_if_expired_item_counts_as_absent(store: Store, clock: FakeClock) -> None:
    await store.put("lease", {"owner": "crashed"}, expires_at=clock.now + 30)
    assert await store.put_if("lease", {"owner": "me"}, expected={"owner": None}) is False
    clock.advance(30)
    assert await store.put_if("lease", {"owner": "me"}, expected={"owner": "crashed"}) is False
    assert (
        await store.put_if("lease", {"owner": "me"}, expected={"owner": None}, expires_at=clock.now + 30)
        is True
    )
    assert await store.get("lease") == {"owner": "me"}


async def test_put_if_with_no_expectations_is_a_put(store: Store) -> None:
    await store.put("k", {"a": 1})
    assert await store.put_if("k", {"b": 2}, expected={}) is True
    assert await store.get("k") == {"b": 2}


async def test_put_if_with_past_expiry_is_a_conditional_delete(store: Store, clock: FakeClock) -> None:
    await store.put("lease", {"owner": "a"})
    assert await store.put_if("lease", {"owner": "b"}, expected={"owner": "b"}, expires_at=clock.now) is False
    assert await store.get("lease") == {"owner": "a"}
    assert await store.put_if("lease", {"owner": "a"}, expected={"owner": "a"}, expires_at=clock.now) is True
    assert await store.get("lease") is None


async def test_put_if_raced_by_many_tasks_has_one_winner(store: Store) -> None:
    wins: list[int] = []

    async def contend(i: int) -> None:
        if await store.put_if("lease", {"owner": f"w{i}"}, expected={"owner": None}):
            wins.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(25):
            tg.start_soon(contend, i)
    assert len(wins) == 1
    assert await store.get("lease") == {"owner": f"w{wins[0]}"}


# --- delete, ping, validation -----------------------------------------------------------


async def test_delete(store: Store) -> None:
    await store.put("k", {"n": 1})
    await store.delete("k")
    assert await store.get("k") is None
    await store.delete("k")  # absent: not an error


async def test_ping(store: Store) -> None:
    await store.ping()


@pytest.mark.parametrize(
    "value",
    [{"pk": 1}, {"expires_at": 1}, {"flag": True}, {"price": 1.5}, {"": 1}, {"nested": {"a": 1}}],
)
async def test_invalid_values_are_rejected(store: Store, value: dict) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked in test_validation
        await store.put("k", value)


async def test_invalid_calls_are_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        await store.get("")
    with pytest.raises(ValueError, match="at least one"):
        await store.add("k", {})
    with pytest.raises(ValueError, match="not among"):
        await store.add("k", {"a": 1}, limits={"b": 2})
    with pytest.raises(ValueError, match="int"):
        await store.add("k", {"a": True})
    with pytest.raises(ValueError, match="reserved"):
        await store.put_if("k", {"a": 1}, expected={"expires_at": None})
    with pytest.raises(ValueError, match="once"):
        await store.add("k", {"a": 1}, claim=("m", 1), release="m")
    with pytest.raises(ValueError, match="sequence"):
        await store.add("k", {"a": 1}, drop="m")
    with pytest.raises(ValueError, match="cannot also"):
        await store.add("k", {"a": 1}, claim=("a", 1))
    with pytest.raises(ValueError, match="reserved"):
        await store.add("k", {"a": 1}, release="pk")
    with pytest.raises(ValueError, match="bytes"):
        await store.get("x" * 3000)
