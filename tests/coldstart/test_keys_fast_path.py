"""Router keys read without YAML or pydantic (`router_keys.plain_json_keys`): a JSON keys file
whose entries are plainly valid gives exactly the records the full check (`keys_file`) gives;
anything else goes through the full check, which accepts or refuses it as before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tier_router.keys_file import parse_keys_file
from tier_router.router_keys import KeysError, parse_keys, plain_json_keys

ROOT = Path(__file__).resolve().parents[2]
SHA = "0123456789abcdef" * 4

PLAIN = [
    {"keys": []},
    {},
    {"keys": [{"name": "ci", "sha256": SHA}]},
    {"keys": [{"name": "a.b-c_d", "sha256": SHA, "daily_usd": 5, "rpm": 0, "tpm": 10, "tiers": ["budget"]}]},
    {"keys": [{"name": "x" * 64, "sha256": SHA, "daily_usd": 0.25}, {"name": "y", "sha256": SHA}]},
]
NOT_PLAIN = [
    "keys:\n  - {name: ci, sha256: " + SHA + "}\n",  # YAML
    {"keys": [{"name": "ci", "sha256": SHA, "rpm": "5"}]},  # coerced by pydantic
    {"keys": [{"name": "ci", "sha256": SHA, "rpm": 5.0}]},
    {"keys": [{"name": "ci", "sha256": SHA, "daily_usd": True}]},
    {"keys": [{"name": "ci", "sha256": SHA, "rpm": -1}]},  # refused
    {"keys": [{"name": "ci", "sha256": SHA.upper()}]},
    {"keys": [{"name": "x" * 65, "sha256": SHA}]},
    {"keys": [{"name": "-ci", "sha256": SHA}]},
    {"keys": [{"name": "ci", "sha256": SHA, "tiers": []}]},
    {"keys": [{"name": "ci", "sha256": SHA, "extra": 1}]},
    {"keys": [{"name": "ci", "sha256": SHA}, {"name": "ci", "sha256": SHA}]},  # duplicate names
    {"keys": None},
    {"other": []},
    [],
]


def text_of(doc: Any) -> str:
    return doc if isinstance(doc, str) else json.dumps(doc)


@pytest.mark.parametrize("doc", PLAIN, ids=str)
def test_a_plain_json_keys_file_gives_the_full_checks_records(doc: Any) -> None:
    fast = plain_json_keys(text_of(doc))
    assert fast is not None
    assert fast == parse_keys_file(text_of(doc), "keys")
    assert [type(r.daily_usd) for r in fast] == [
        type(r.daily_usd) for r in parse_keys_file(text_of(doc), "k")
    ]


@pytest.mark.parametrize("doc", NOT_PLAIN, ids=str)
def test_anything_else_goes_through_the_full_check(doc: Any) -> None:
    assert plain_json_keys(text_of(doc)) is None
    assert outcome(parse_keys, doc) == outcome(parse_keys_file, doc)


def outcome(parse: Any, doc: Any) -> Any:
    """The records, or the error's message."""
    try:
        return parse(text_of(doc), "keys")
    except KeysError as exc:
        return f"KeysError: {exc}"


def test_a_json_keys_file_is_read_without_yaml_or_pydantic() -> None:
    code = (
        "import sys; from tier_router.router_keys import parse_keys; "
        f"records = parse_keys({text_of(PLAIN[3])!r}, 'ssm'); "
        "print(len(records), 'yaml' in sys.modules, 'pydantic' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(ROOT / "handler"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == ["1", "False", "False"]


def test_keys_create_writes_a_file_the_fast_path_reads(tmp_path) -> None:
    """`keys create` writes JSON under a comment line: still YAML for people, and the Lambda's
    SSM copy of it is read without YAML or pydantic."""
    import yaml
    from tier_router.keys_file import append_key, parse_keys_file, validated_record
    from tier_router.router_keys import plain_json_keys

    path = tmp_path / "keys.yaml"
    for name in ("billing", "search"):
        record = validated_record(name=name, sha256="ab" * 32, daily_usd=2.5, rpm=60, tiers=["budget"])
        append_key(path, record)
    text = path.read_text()
    fast = plain_json_keys(text)
    assert fast is not None
    assert fast == parse_keys_file(text, str(path))
    assert [r.name for r in fast] == ["billing", "search"]
    assert yaml.safe_load(text)["keys"][1]["tiers"] == ["budget"]
