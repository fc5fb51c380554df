"""docs/regions.md's budget arithmetic across regions: each region's `budgets.daily_usd` is the
cap × its share and the shares add up to the cap (no cross-region overrun); the worst cases it
states for one cap on a global table follow from replication lag (Σ rate × lag) and last-writer-
wins (N − 1 caps). Also: every page the doc names for the options exists and the template has
the parameters its table lists."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import yaml
from tier_router.schema import BudgetConfig
from tier_router.schema.spend import RateLimitConfig
from tier_router.spend.ratelimit import Allowed, RateLimiter
from tier_router.store.memory import MemoryStore
from tier_router.store.regional import RegionalStore

from tests.support.cfn_template import ROOT, load

DOC = (ROOT / "docs" / "regions.md").read_text(encoding="utf-8")
FLAT = " ".join(DOC.split())


def section(heading: str) -> str:
    start = DOC.index(heading)
    following = DOC.find("\n#", start + len(heading))
    return DOC[start : following if following != -1 else len(DOC)]


def share_rows() -> list[tuple[str, Decimal, Decimal]]:
    rows = re.findall(
        r"^\| ([a-z]{2}-[a-z]+-\d|total) \| ([\d.]+) \| ([\d.]+) \|$", section("### Budgets"), re.M
    )
    return [(region, Decimal(share), Decimal(usd)) for region, share, usd in rows]


def cap() -> Decimal:
    return Decimal(re.search(r"Worked example \(cap \$(\d+) a day", FLAT).group(1))


def lag_overrun(rates_usd_per_s: list[Decimal], lag_s: Decimal) -> Decimal:
    """Every region keeps admitting for one lag after the true total reaches the cap."""
    return sum(rates_usd_per_s, Decimal(0)) * lag_s


def lww_overrun(regions: int, cap_usd: Decimal) -> Decimal:
    """The item keeps one region's adds while every region spends up to the cap."""
    return (regions - 1) * cap_usd


def test_each_region_gets_its_share_of_the_cap_and_the_shares_add_up() -> None:
    rows = share_rows()
    *regions, (total_name, total_share, total_usd) = rows
    assert total_name == "total"
    assert len(regions) == 3
    for _, share, usd in regions:
        assert usd == cap() * share
    assert sum(share for _, share, _ in regions) == total_share == 1
    assert sum(usd for _, _, usd in regions) == total_usd == cap()


def test_the_stated_worst_cases_for_one_cap_on_a_global_table() -> None:
    rates = [Decimal(r) for r in re.search(r"At ([\d.]+) \+ ([\d.]+) \+ ([\d.]+) = \$", FLAT).groups()]
    assert f"= ${sum(rates):.2f} reserved per second" in FLAT
    assert f"L = 1 s, that is **${lag_overrun(rates, Decimal(1)):.2f}**" in FLAT
    assert f"delay of 60 s (an impaired region), **${lag_overrun(rates, Decimal(60)):.2f}**" in FLAT
    regions = len(share_rows()) - 1
    assert f"**(N − 1) × cap = ${lww_overrun(regions, cap()):.0f}** for three regions" in FLAT


def test_the_options_table_names_the_template_parameters_and_their_defaults() -> None:
    parameters = load()["Parameters"]
    rows = re.findall(r"^\| `(\w+)` \| `?([^`|]*?)`? \|", DOC, re.M)
    assert [name for name, _ in rows] == ["SnapStart", "ReplicaRegions", "SharedTableName"]
    for name, default in rows:
        assert name in parameters, name
        assert str(parameters[name].get("Default", "")) == ("" if default == "(empty)" else default), name


def test_the_rules_example_enforces_the_worked_examples_caps() -> None:
    budgets = yaml.safe_load(section("### Budgets").split("```yaml\n", 1)[1].split("```", 1)[0])["budgets"]
    *regions, _ = share_rows()
    assert budgets["daily_usd"] == cap()
    assert {region: Decimal(str(share)) for region, share in budgets["region_shares"].items()} == {
        region: share for region, share, _ in regions
    }
    config = BudgetConfig(**budgets)
    for region, _, usd in regions:
        assert config.for_region(region).daily_micro() == usd * 1_000_000


def test_the_key_example_is_how_the_store_names_a_regions_items() -> None:
    example = re.search(r"`(eu-west-1:spend:\d{4}-\d\d-\d\d)`", DOC)
    assert example
    assert RegionalStore(MemoryStore(), "eu-west-1").key(example.group(1).removeprefix("eu-west-1:")) == (
        example.group(1)
    )


def rate_rows() -> list[tuple[int, int, int]]:
    rows = re.findall(r"^\| (\d) \| (\d+) \| (\d+) \|$", section("### Rate limits: per region"), re.M)
    return [(int(r), int(each), int(total)) for r, each, total in rows]


async def admitted_in_one_minute(rpm: int, regions: list[str], tries: int) -> dict[str, int]:
    """`tries` requests of one key in each region, one shared table, one window: how many pass."""
    table = MemoryStore(clock=lambda: 600.0)  # the store's clock and the limiter's: one window
    admitted = {}
    for region in regions:
        limiter = RateLimiter(
            RegionalStore(table, region), RateLimitConfig(requests_per_minute=rpm), clock=lambda: 600.0
        )
        results = [await limiter.check("key-a", 10) for _ in range(tries)]
        admitted[region] = sum(isinstance(r, Allowed) for r in results)
    return admitted


def test_a_keys_rate_limit_counts_in_each_region_it_calls() -> None:
    rpm = int(re.search(r"a key with `requests_per_minute: (\d+)`", FLAT).group(1))
    rows = rate_rows()
    assert [r for r, _, _ in rows] == [1, 2, 3]
    regions = ["us-east-1", "eu-west-1", "ap-northeast-1"]
    for count, each, total in rows:
        admitted = asyncio.run(admitted_in_one_minute(rpm, regions[:count], tries=rpm + 50))
        assert set(admitted.values()) == {each} == {rpm}
        assert sum(admitted.values()) == total == count * rpm


def test_dividing_the_limit_by_the_regions_holds_the_total() -> None:
    rpm = int(re.search(r"a key with `requests_per_minute: (\d+)`", FLAT).group(1))
    divided = int(re.search(r"write `requests_per_minute: (\d+)` \((\d+) / 3\)", FLAT).group(1))
    assert divided == rpm // 3
    regions = ["us-east-1", "eu-west-1", "ap-northeast-1"]
    admitted = asyncio.run(admitted_in_one_minute(divided, regions, tries=rpm))
    assert sum(admitted.values()) == rpm
    assert admitted["us-east-1"] == divided  # all traffic in one region: only its part passes
