"""docs/regions.md's budget arithmetic across regions: each region's `budgets.daily_usd` is the
cap × its share and the shares add up to the cap (no cross-region overrun); the worst cases it
states for one cap on a global table follow from replication lag (Σ rate × lag) and last-writer-
wins (N − 1 caps). Also: every page the doc names for the options exists and the template has
the parameters its table lists."""

from __future__ import annotations

import re
from decimal import Decimal

import yaml
from tier_router.schema import BudgetConfig
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
