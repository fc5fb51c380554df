"""`RegionalStore`: routers in several regions sharing one table (a DynamoDB global table) each
write only items of their own, so no item is ever written from two regions (where a global
table keeps one write: last writer wins). The Store contract runs on it too
(tests/store/test_store_contract.py, the `regional` store)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from tier_router.settings import Settings
from tier_router.store.factory import StoreURLError, open_store
from tier_router.store.memory import MemoryStore
from tier_router.store.regional import RegionalStore

pytestmark = pytest.mark.anyio

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")


async def test_each_region_adds_to_its_own_item_and_every_add_counts() -> None:
    """The same counter key from three regions at once: three items, each exact; their sum is
    every add (on one shared item, a global table would keep one region's adds)."""
    table = MemoryStore()
    views = [RegionalStore(table, region) for region in REGIONS]

    async def spend(view: RegionalStore, times: int) -> None:
        for _ in range(times):
            await view.add("spend:2026-12-07", {"total": 7, "requests": 1})

    await asyncio.gather(*(spend(view, n) for view, n in zip(views, (50, 30, 20), strict=True)))
    items = await table.get_many([f"{region}:spend:2026-12-07" for region in REGIONS])
    assert [items[f"{region}:spend:2026-12-07"]["requests"] for region in REGIONS] == [50, 30, 20]
    assert sum(item["total"] for item in items.values()) == 7 * 100
    assert await table.get("spend:2026-12-07") is None  # nothing outside a region's namespace


async def test_a_region_reads_and_writes_only_its_own_keys() -> None:
    table = MemoryStore()
    here, there = RegionalStore(table, "eu-west-1"), RegionalStore(table, "us-east-1")
    await here.put("breaker:openai", {"state": "open"})
    assert await there.get("breaker:openai") is None
    assert await there.get_many(["breaker:openai"]) == {}
    assert await there.put_if("breaker:openai", {"state": "closed"}, expected={"state": None})
    assert await here.get_many(["breaker:openai", "absent"]) == {"breaker:openai": {"state": "open"}}
    await there.delete("breaker:openai")
    assert await here.get("breaker:openai") == {"state": "open"}
    assert await table.get("eu-west-1:breaker:openai") == {"state": "open"}


async def test_in_region_is_another_regions_view_of_the_same_table() -> None:
    table = MemoryStore()
    here = RegionalStore(table, "eu-west-1")
    await RegionalStore(table, "us-east-1").add("spend:d", {"total": 5})
    there = here.in_region("us-east-1")
    assert (there.region, there.inner) == ("us-east-1", table)
    assert await there.get("spend:d") == {"total": 5}
    assert await here.get("spend:d") is None


async def test_a_budget_ceiling_is_checked_on_the_regions_own_item() -> None:
    table = MemoryStore()
    here, there = RegionalStore(table, "eu-west-1"), RegionalStore(table, "us-east-1")
    assert await here.add("budget", {"committed": 90}, limits={"committed": 100}) == {"committed": 90}
    assert await there.add("budget", {"committed": 90}, limits={"committed": 100}) == {"committed": 90}
    assert await here.add("budget", {"committed": 20}, limits={"committed": 100}) is None


@pytest.mark.parametrize("key", ["", None, 3])
async def test_invalid_keys_are_refused_as_by_any_store(key: object) -> None:
    with pytest.raises(ValueError, match="store keys"):
        await RegionalStore(MemoryStore(), "eu-west-1").get(key)  # type: ignore[arg-type]


@pytest.mark.parametrize("region", ["", "eu:west"])
def test_a_region_name_is_needed(region: str) -> None:
    with pytest.raises(ValueError, match="region name"):
        RegionalStore(MemoryStore(), region)


def settings(tmp_path: Path, **environ: str) -> Settings:
    return Settings.from_env({"TIER_ROUTER_RULES": str(tmp_path / "r.yaml"), **environ})


def test_the_factory_namespaces_a_shared_store_by_this_region(tmp_path: Path) -> None:
    shared = settings(tmp_path, TIER_ROUTER_SHARED_STORE="1", AWS_REGION="ap-northeast-1")
    store = open_store("memory://", settings=shared)
    assert isinstance(store, RegionalStore)
    assert store.region == "ap-northeast-1"
    named = dataclasses.replace(shared, region="eu-west-1")  # TIER_ROUTER_REGION
    assert open_store("memory://", settings=named).region == "eu-west-1"  # type: ignore[attr-defined]


def test_the_region_setting_prefers_tier_router_region(tmp_path: Path) -> None:
    assert settings(tmp_path, TIER_ROUTER_REGION="eu-west-1", AWS_REGION="us-east-1").region == "eu-west-1"
    assert settings(tmp_path, AWS_REGION="us-west-2").region == "us-west-2"
    assert settings(tmp_path, AWS_DEFAULT_REGION="us-west-2").region is None  # a client default
    assert settings(tmp_path).region is None


def test_a_store_not_shared_is_not_wrapped(tmp_path: Path) -> None:
    store = open_store("memory://", settings=settings(tmp_path, AWS_REGION="eu-west-1"))
    assert isinstance(store, MemoryStore)


def test_a_shared_store_without_a_region_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreURLError, match="AWS_REGION or TIER_ROUTER_REGION"):
        open_store("memory://", settings=settings(tmp_path, TIER_ROUTER_SHARED_STORE="true"))
