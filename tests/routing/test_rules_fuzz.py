"""Fuzzed rules files: loading either succeeds or raises RulesError — never a traceback.

Two generators: arbitrary text (YAML syntax errors, odd scalars, binary junk) and the shipped
rules file with one value somewhere replaced by an arbitrary YAML value (type confusion deep
inside providers, tiers, rules and conditions).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tier_router.routing.engine import Rules
from tier_router.routing.loader import RulesError, load_rules, parse_rules

SHIPPED = Path(__file__).parent.parent.parent / "rules" / "router.yaml"
BASE = yaml.safe_load(SHIPPED.read_text())

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += paths(child, (*prefix, index))
    return found


ALL_PATHS = paths(BASE)


def replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


def loads_or_rules_error(load: Any) -> None:
    """Anything other than Rules or RulesError (a TypeError, a RecursionError...) fails the test."""
    error: RulesError | None = None
    result = None
    try:
        result = load()
    except RulesError as exc:
        error = exc
    if error is None:
        assert isinstance(result, Rules)
    else:
        assert str(error).startswith("invalid rules file")
        assert error.problems


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=400))
def test_arbitrary_text_never_crashes_the_loader(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    loads_or_rules_error(lambda: load_rules(path))


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(ALL_PATHS), value=values)
def test_any_value_anywhere_in_the_shipped_file_never_crashes(path: tuple[Any, ...], value: Any) -> None:
    loads_or_rules_error(lambda: parse_rules(replaced(path, value), "fuzz.yaml"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(ALL_PATHS), value=values)
def test_mutated_files_round_trip_through_yaml(tmp_path: Path, path: tuple[Any, ...], value: Any) -> None:
    target = tmp_path / "rules.yaml"
    target.write_text(yaml.safe_dump(replaced(path, value), allow_unicode=True), encoding="utf-8")
    loads_or_rules_error(lambda: load_rules(target))
