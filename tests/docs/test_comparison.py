"""The README's comparison table is docs/comparison.md's measured medians, rounded: a figure
changed on one page and not the other fails here."""

from __future__ import annotations

from tests.docs.blocks import ROOT

NAMES = {
    "bare Starlette + httpx": "floor (Starlette + httpx)",
    "**tier-router**": "**tier-router**",
    "Portkey gateway (Node)": "Portkey gateway",
    "LiteLLM proxy": "LiteLLM proxy",
}


def rows(text: str, heading: str) -> dict[str, list[str]]:
    """The first table after `heading`: {first cell: the other cells}."""
    table = text.split(heading, 1)[1].split("\n\n|", 1)[1]
    found = {}
    for line in ("|" + table).splitlines():
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        found[cells[0]] = cells[1:]
    return found


def median(cell: str) -> float:
    """'2.42 (2.22–6.55)' → 2.42; '2,388' → 2388."""
    return float(cell.split(" ")[0].replace(",", ""))


def same(readme: str, measured: float) -> bool:
    """`readme` ('2.3 ms', '261', '61 MB') is `measured` rounded to the digits it shows (ms from µs
    where the measured column is in µs)."""
    number = readme.split(" ")[0]
    digits = len(number.split(".")[1]) if "." in number else 0
    return abs(float(number) - measured) <= 0.5 * 10**-digits + 1e-9


def test_the_readme_figures_are_the_measured_medians() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    page = (ROOT / "docs" / "comparison.md").read_text(encoding="utf-8")
    shown = rows(readme, "## Compared with LiteLLM, Portkey and OpenRouter")
    plain = rows(page, "Non-streamed (")
    streamed = rows(page, "Streamed (")
    start = rows(page, "Start and memory:")
    assert set(NAMES) <= set(shown), shown
    for name, key in NAMES.items():
        p50, stream_p50, rps, cpu, rss = shown[name]
        assert same(p50, median(plain[key][0])), (name, p50, plain[key][0])
        assert same(stream_p50, median(streamed[key][0])), (name, stream_p50, streamed[key][0])
        assert same(rps, median(plain[key][2])), (name, rps, plain[key][2])
        assert same(cpu, median(plain[key][3]) / 1000), (name, cpu, plain[key][3])
        assert same(rss, median(start[key][2])), (name, rss, start[key][2])
