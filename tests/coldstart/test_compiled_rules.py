"""Compiled rules (`routing.compiled`): the same router as the full loader's, and never stale.

A compiled form is made by the full loader and loaded without it; these tests hold the two
loads to the same structures and the same decisions (the shipped rules files and their golden
examples), and hold every way a compiled form can be wrong (stale rules, another schema,
corrupt, missing) to a full load with one warning line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from tier_router.routing import compiled as compiled_mod
from tier_router.routing.compiled import compile_file, compiled_path, load_rules_fast, main
from tier_router.routing.engine import Rules
from tier_router.routing.examples import default_examples_path, load_examples, run_example
from tier_router.routing.loader import RulesError, load_rules
from tier_router.schema import RulesFile
from tier_router.schema.forms import Form

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "rules" / "router.yaml", ROOT / "rules" / "local-demo.yaml"]


@pytest.fixture(params=SHIPPED, ids=lambda p: p.name)
def shipped(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of a shipped rules file (and its examples), compiled."""
    source: Path = request.param
    for path in source.parent.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    copy = tmp_path / source.name
    compile_file(copy)
    return copy


def same_tree(form: Any, model: Any, where: str = "spec") -> None:
    """The runtime form holds exactly the validated model's data, model by model."""
    if isinstance(model, BaseModel):
        assert isinstance(form, Form), where
        assert form._kind == type(model).__name__, where
        assert form.model_fields_set == model.model_fields_set, where
        for name in type(model).model_fields:
            same_tree(getattr(form, name), getattr(model, name), f"{where}.{name}")
        for name, value in (model.__pydantic_private__ or {}).items():
            same_tree(getattr(form, name), value, f"{where}.{name}")
    elif isinstance(model, dict):
        assert isinstance(form, dict), where
        assert list(form) == list(model), where
        for key in model:
            same_tree(form[key], model[key], f"{where}.{key}")
    elif isinstance(model, list | tuple):
        assert type(form) is type(model), where
        assert len(form) == len(model), where
        for i, (a, b) in enumerate(zip(form, model, strict=True)):
            same_tree(a, b, f"{where}[{i}]")
    else:
        assert type(form) is type(model), where
        assert form == model, where


def shape(value: Any, depth: int = 0) -> Any:
    """A predicate (or any compiled object) as plain data: its class and attributes, models
    by their data; whatever has no such form (a compiled regex set) by its type's name."""
    if isinstance(value, BaseModel | Form):
        return value.model_dump()
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    if isinstance(value, list | tuple):
        return [shape(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: shape(v, depth + 1) for k, v in value.items()}
    names = getattr(type(value), "__slots__", ()) or list(getattr(value, "__dict__", {}))
    if not names or depth > 12:
        return type(value).__name__
    return (type(value).__name__, {n: shape(getattr(value, n, None), depth + 1) for n in names})


def describe(rules: Rules) -> dict[str, Any]:
    """What the router runs, as plain data (predicates by their explanation's shape)."""
    return {
        "routes": {
            n: (r.as_dict(), r.retry.model_dump(), r.timeouts.model_dump(), r.kind)
            for n, r in rules.routes.items()
        },
        "tiers": {t: [r.name for r in chain] for t, chain in rules.tiers.items()},
        "targets": {
            n: (t.kind, t.tier, [r.name for r in t.chain], t.embedding) for n, t in rules.targets.items()
        },
        "rules": [
            (r.name, r.tier, r.priority, shape(r.predicate), r.cascade is not None) for r in rules.rules
        ],
        "embedding_rules": [(r.name, r.tier, shape(r.predicate)) for r in rules.embedding_rules],
        "splits": sorted(rules.splits),
        "cascades": sorted(rules.cascades),
    }


def test_the_compiled_form_holds_the_validated_models(shipped: Path) -> None:
    fast, full = load_rules_fast(shipped), load_rules(shipped)
    assert isinstance(full.spec, RulesFile)
    assert isinstance(fast.spec, Form)
    same_tree(fast.spec, full.spec)
    assert fast.spec.model_dump() == full.spec.model_dump()
    assert fast.spec.model_dump(by_alias=True, exclude_unset=True) == full.spec.model_dump(
        by_alias=True, exclude_unset=True
    )


def test_the_compiled_rules_compile_to_the_same_router(shipped: Path) -> None:
    assert describe(load_rules_fast(shipped)) == describe(load_rules(shipped))


def test_the_golden_examples_decide_the_same(shipped: Path) -> None:
    examples_path = default_examples_path(shipped)
    assert examples_path is not None
    examples = load_examples(examples_path)
    fast, full = load_rules_fast(shipped), load_rules(shipped)
    for example in examples:
        a, b = run_example(fast, example), run_example(full, example)
        assert a.line() == b.line()
        assert a.ok, a.line()
        if a.decision is not None and b.decision is not None:
            assert a.decision.why == b.decision.why
            assert [c.name for c in a.decision.candidates] == [c.name for c in b.decision.candidates]


def test_the_runtime_form_behaves_as_the_model(shipped: Path) -> None:
    fast, full = load_rules_fast(shipped).spec, load_rules(shipped).spec
    assert fast.tiers == full.tiers
    for tier in full.tier_specs:
        a, b = fast.tier_specs[tier], full.tier_specs[tier]
        assert (a.listed, a.names, a.weighted) == (b.listed, b.names, b.weighted)
    for budgets in (fast.budgets, full.budgets):
        assert budgets.enabled == full.budgets.enabled
        assert budgets.daily_micro() == full.budgets.daily_micro()
        assert budgets.key_daily_micro("ci") == full.budgets.key_daily_micro("ci")
    assert fast.limits.enabled == full.limits.enabled
    assert fast.limits.for_key("ci") == full.limits.for_key("ci")
    for tier in [None, *full.tiers]:
        assert fast.cache.policy(tier, None) == full.cache.policy(tier, None)
    assert fast.quality.judging == full.quality.judging
    assert {n: e.buckets() for n, e in fast.experiments.items()} == {
        n: e.buckets() for n, e in full.experiments.items()
    }
    prices = [m.price for m in fast.models.values()]
    assert [hash(p) for p in prices] == [hash(m.price.model_copy()) for m in fast.models.values()]
    assert prices == [m.price.model_copy() for m in fast.models.values()]
    changed = fast.budgets.model_copy(update={"daily_usd": 1.5})
    assert changed.daily_micro() == 1_500_000
    assert fast.budgets.daily_micro() == full.budgets.daily_micro()
    assert "daily_usd" in changed.model_fields_set
    with pytest.raises(AttributeError, match="frozen"):
        fast.budgets.daily_usd = 3  # type: ignore[misc]


def test_a_changed_rules_file_is_loaded_in_full(shipped: Path, caplog: pytest.LogCaptureFixture) -> None:
    shipped.write_text(shipped.read_text().replace("default_tier:", "# edited\ndefault_tier:", 1))
    with caplog.at_level(logging.WARNING, logger="tier_router"):
        rules = load_rules_fast(shipped, expect_compiled=True)
    assert isinstance(rules.spec, RulesFile)  # the full loader's: the edit is served, not the old form
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "stale" in warnings[0]
    assert shipped.name in warnings[0]


def test_another_schema_is_stale(shipped: Path, caplog: pytest.LogCaptureFixture, monkeypatch: Any) -> None:
    monkeypatch.setattr(compiled_mod, "schema_digest", lambda: "0" * 64)
    with caplog.at_level(logging.WARNING, logger="tier_router"):
        rules = load_rules_fast(shipped)
    assert isinstance(rules.spec, RulesFile)
    assert "made by another version of the router" in caplog.text


def rewrite(path: Path, header: dict[str, Any] | None = None, payload: bytes | None = None) -> None:
    head, _, rest = path.read_bytes().partition(b"\n")
    new_header = json.loads(head) if header is None else header
    new_payload = rest.rstrip(b"\n") if payload is None else payload
    path.write_bytes(json.dumps(new_header).encode() + b"\n" + new_payload + b"\n")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncated", "corrupt: its content does not match its checksum"),
        ("not json", "corrupt: JSONDecodeError"),
        ("unknown class", "corrupt: KeyError"),
        ("not a rules file", "corrupt: not a rules file"),
        ("old format", "format 0"),
        ("empty", "corrupt: JSONDecodeError"),
    ],
)
def test_a_corrupt_compiled_form_is_loaded_in_full(
    shipped: Path, caplog: pytest.LogCaptureFixture, damage: str, reason: str
) -> None:
    target = compiled_path(shipped)
    head, _, rest = target.read_bytes().partition(b"\n")
    header = json.loads(head)
    if damage == "truncated":
        target.write_bytes(head + b"\n" + rest[: len(rest) // 2])
    elif damage == "empty":
        target.write_bytes(b"")
    else:
        if damage == "not json":
            payload = b'{"classes": '
        elif damage == "unknown class":
            payload = json.dumps({"classes": {}, "spec": {"$m": "Nope", "f": {}, "s": [], "p": {}}}).encode()
        elif damage == "not a rules file":
            payload = json.dumps({"classes": {}, "spec": ["a list"]}).encode()
        else:
            payload, header["format"] = rest.rstrip(b"\n"), 0
        header["payload_sha256"] = hashlib.sha256(payload).hexdigest()
        rewrite(target, header, payload)
    with caplog.at_level(logging.WARNING, logger="tier_router"):
        rules = load_rules_fast(shipped)
    assert isinstance(rules.spec, RulesFile)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert reason in warnings[0]
    assert f"loading {shipped} in full" in warnings[0]


def test_missing_compiled_form_warns_only_where_one_is_expected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules = tmp_path / "router.yaml"
    shutil.copy(SHIPPED[0], rules)
    with caplog.at_level(logging.WARNING, logger="tier_router"):
        load_rules_fast(rules)  # local serving: no compiled form, nothing to say
        assert caplog.records == []
        load_rules_fast(rules, expect_compiled=True)  # Lambda: the build should have made one
    assert [r.getMessage() for r in caplog.records] == [
        f"no compiled rules router.yaml.compiled.json: loading {rules} in full (slower start)"
    ]


def test_a_rules_file_that_does_not_load_is_not_compiled(tmp_path: Path, capsys: Any) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(SHIPPED[0].read_text().replace("default_tier: standard", "default_tier: nowhere"))
    assert main([str(broken)]) == 1
    assert "default_tier" in capsys.readouterr().err
    assert not compiled_path(broken).exists()
    with pytest.raises(RulesError):
        load_rules_fast(broken)


def test_a_value_the_format_cannot_hold_fails_the_build() -> None:
    with pytest.raises(TypeError, match=r"spec\.x: cannot compile a set"):
        compiled_mod.encode({"x": {1, 2}}, {}, "spec")
    with pytest.raises(TypeError, match="keys that are not strings"):
        compiled_mod.encode({1: "a"}, {}, "spec")
