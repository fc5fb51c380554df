"""The shared JSON Schema path (`validators.schemas`): compiled once and cached by the schema's
canonical form, bounded LRU, lazy import, and hostile schemas that must neither crash, hang nor
reach outside — they read as "cannot check" (the answer passes) and are counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tier_router.validators import schemas

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemas, "_cache", type(schemas._cache)())
    monkeypatch.setattr(schemas, "STATS", schemas.Stats())


def test_a_schema_compiles_once_and_key_order_does_not_matter() -> None:
    one = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    same = {"required": ["a"], "properties": {"a": {"type": "integer"}}, "type": "object"}
    assert schemas.violation(one, {"a": 1}) is None
    assert schemas.violation(same, {"a": "x"}) == "$.a: must be integer"
    assert schemas.STATS.compiled == 1
    assert schemas.STATS.cache_hits == 1


def test_the_cache_is_bounded_and_least_recently_used_goes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemas, "CACHE_SIZE", 3)
    first = {"type": "string", "minLength": 0}
    schemas.violation(first, "x")
    for n in range(1, 3):
        schemas.violation({"type": "string", "minLength": n}, "xxxx")
    schemas.violation(first, "x")  # used again: now the most recent
    schemas.violation({"type": "string", "minLength": 9}, "x")  # evicts minLength 1
    assert len(schemas._cache) == 3
    compiled = schemas.STATS.compiled
    schemas.violation(first, "x")
    assert schemas.STATS.compiled == compiled
    schemas.violation({"type": "string", "minLength": 1}, "x")
    assert schemas.STATS.compiled == compiled + 1


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"$ref": "http://127.0.0.1:9/schema.json"}, "a remote $ref"),
        ({"properties": {"a": {"$ref": "file:///etc/passwd"}}}, "a remote $ref"),
        ({"type": "strin"}, "an unknown type"),
        ({"minimum": "0); import os #"}, "minimum is not a number"),
        ({"maxLength": float("nan")}, "maxLength is not a number"),
        (nested(40), "nested too deeply"),
        ({"enum": ["x" * 100] * 200}, "too large"),
        ({"$ref": "#/$defs/missing"}, "does not compile (JsonSchemaDefinitionException)"),
        ({"properties": {"a": {"type": "string", "pattern": "(?<=a)b"}}}, "a pattern RE2 cannot compile"),
        ("not a schema", "not a schema"),
        (["type", "object"], "not a schema"),
    ],
)
def test_a_schema_that_cannot_be_checked_lets_the_answer_pass_counted(schema: Any, reason: str) -> None:
    assert schemas.violation(schema, {"a": 1}) is None
    assert schemas.violation(schema, {"a": 1}) is None
    assert schemas.STATS.reasons == {reason: 2}
    assert schemas.STATS.compiled == 0


def test_the_requests_schema_is_not_changed() -> None:
    """fastjsonschema rewrites `$ref`s in the schema it compiles; the request may still be sent
    on (an escalation), so it compiles a copy."""
    schema = {
        "$id": "https://schemas.example/order.json",
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/a"}},
        "$defs": {"a": {"type": "integer"}},
    }
    before = json.dumps(schema, sort_keys=True)
    assert schemas.violation(schema, {"a": "x"}) == "$.a: must be integer"
    assert json.dumps(schema, sort_keys=True) == before


def test_cannot_check_is_logged_without_schema_content(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG", logger="tier_router.validators"):
        schemas.violation({"$ref": "https://secret.example/s.json"}, 1)
    assert "cannot be checked (a remote $ref)" in caplog.text
    assert "secret" not in caplog.text


def test_no_schema_makes_the_router_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the screen too: the library's own fallback to urllib is never reached."""
    import urllib.request

    def urlopen(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a schema made the router fetch a URL")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    for uri in ("http://127.0.0.1:9/x.json", "file:///etc/passwd", "ftp://h/x", "data:,{}", "weird:x"):
        with pytest.raises(schemas.Uncheckable):
            schemas.compile_schema({"$ref": uri})


def test_patterns_run_on_re2_so_no_answer_backtracks() -> None:
    """With Python's re, "(a+)+$" on 100,000 a's and a "!" would not return in our lifetime."""
    schema = {"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}}
    assert schemas.violation(schema, {"x": "a" * 100_000 + "!"}) == "$.x: does not match the schema's pattern"
    assert schemas.violation(schema, {"x": "aaaa"}) is None
    keys = {"type": "object", "patternProperties": {"^(a|aa)+$": {"type": "integer"}}}
    assert schemas.violation(keys, {"a" * 50_000 + "b": "x", "aa": 1}) is None
    assert schemas.violation(keys, {"aa": "x"}) == "$.*: must be integer"


def test_json_schema_pattern_dollar_is_end_of_text() -> None:
    schema = {"type": "string", "pattern": "^[a-z]+$"}
    assert schemas.violation(schema, "abc\n") == "$: does not match the schema's pattern"
    assert schemas.violation(schema, "abc") is None


def test_a_self_referencing_schema_does_not_crash() -> None:
    for schema in (
        {"$ref": "#"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    ):
        assert schemas.violation(schema, {"a": 1}) is None
    assert schemas.STATS.unfinished == 2


def test_a_deep_instance_on_a_recursive_schema() -> None:
    schema = {"type": "array", "items": {"$ref": "#"}}
    deep = json.loads("[" * 900 + "]" * 900)
    assert schemas.violation(schema, deep) is None  # passes: checked, or counted as unfinished
    assert schemas.violation(schema, [[[1]]]) == "$[0][0][0]: must be array"


def test_property_names_cannot_inject_code_and_are_not_echoed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f'"]; open({str(marker)!r}, "w")  # \\\\ {{x}} \n'
    schema = {"type": "object", "properties": {evil: {"type": "integer"}}, "required": [evil]}
    assert schemas.violation(schema, {evil: "x"}) == "$.*: must be integer"
    assert schemas.violation(schema, {}) == "$: missing a required property"
    assert not marker.exists()


def test_defaults_are_not_filled_in_and_formats_are_annotations() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "default": "x", "format": "email"}}}
    instance: dict[str, Any] = {}
    assert schemas.violation(schema, instance) is None
    assert instance == {}
    assert schemas.violation(schema, {"a": "not an email"}) is None


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("data", "$"),
        ("data.items[2].price", "$.items[2].price"),
        ("data.undeclared.price", "$.*.price"),
        ("data.a.b[x]", "$.*.*[*]"),
    ],
)
def test_json_path(name: str, path: str) -> None:
    assert schemas.json_path(name, frozenset({"items", "price"})) == path


def test_the_library_is_imported_only_when_a_schema_is_checked() -> None:
    code = (
        "import sys\n"
        "import tier_router.app\n"
        "from tier_router.validators import build_validators, Reply, Ask, validate\n"
        "vs = build_validators(['json', 'tool_args', 'refusal', {'min_length': 2}], {})\n"
        "ask = Ask.of({'response_format': {'type': 'json_object'}})\n"
        "reply = Reply.of({'choices': [{'message': {'content': '{}'}}]})\n"
        "assert validate(vs, reply, ask) is None\n"
        "assert 'fastjsonschema' not in sys.modules, 'imported before a schema check'\n"
        "fmt = {'type': 'json_schema', 'json_schema': {'schema': {'type': 'object'}}}\n"
        "ask = Ask.of({'response_format': fmt})\n"
        "assert validate(vs, reply, ask) is None\n"
        "assert 'fastjsonschema' in sys.modules\n"
    )
    env = {"PYTHONPATH": str(ROOT / "handler"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("schema", "instance", "reason"),
    [
        ({"properties": {"a": False}}, {"a": "secret"}, "$.a: is not allowed by the schema"),
        ({"const": "x"}, "secret", "$: must equal the schema's const"),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1, "$: must match exactly one of oneOf"),
        ({"not": {"type": "string"}}, "secret", "$: matches the schema under not"),
        ({"uniqueItems": True}, ["secret", "secret"], "$: has duplicate items (uniqueItems)"),
        ({"maxLength": 2}, "secret", "$: fails maxLength 2"),
        ({"multipleOf": 3}, 4, "$: fails multipleOf 3"),
        ({"exclusiveMaximum": 3}, 3, "$: fails exclusiveMaximum 3"),
        ({"if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}}, {"a": 1},
         "$: missing required property 'b'"),
        ({"type": "array", "items": {"type": "string"}}, ["ok", 1], "$[1]: must be string"),
    ],
)  # fmt: skip
def test_keyword_reasons_come_from_the_schema_only(schema: Any, instance: Any, reason: str) -> None:
    assert schemas.violation(schema, instance) == reason
