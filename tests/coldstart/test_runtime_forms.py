"""The validation models and their pydantic-free runtime twins stay one definition.

The request path reads the rules file through `schema.forms` views and constants in
`schema.units`, and router keys as `router_keys.KeyRecord`; the validation models keep their
fields. These tests tie each pair together, so a field or a behaviour added to one side only
fails here instead of on Lambda.
"""

from __future__ import annotations

import dataclasses
import inspect

from pydantic import BaseModel
from tier_router import schema
from tier_router.keys_file import KeyEntry
from tier_router.router_keys import KeyRecord
from tier_router.schema import forms, units
from tier_router.schema.common import Strict
from tier_router.schema.quality import percent_to_buckets
from tier_router.schema.routing import Condition
from tier_router.schema.units import CONDITION_FIELDS

BASE_NAMES = set(dir(BaseModel)) | set(dir(Strict))


def schema_models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for name in schema.__all__:
        value = getattr(schema, name)
        if isinstance(value, type) and issubclass(value, BaseModel):
            for cls in value.__mro__:
                if (
                    isinstance(cls, type)
                    and issubclass(cls, BaseModel)
                    and cls.__module__.startswith("tier_router")
                ):
                    found[cls.__name__] = cls
    from tier_router.schema.embeddings import EmbeddingsSection

    found["EmbeddingsSection"] = EmbeddingsSection
    return list(found.values())


def own_behaviour(cls: type) -> set[str]:
    """Public properties and methods the class itself defines (not validators, not pydantic's)."""
    names = set()
    for name, value in vars(cls).items():
        if name.startswith("_") or name in BASE_NAMES:
            continue
        if isinstance(value, property) or inspect.isfunction(value):
            names.add(name)
    return names


def test_every_behaviour_of_a_model_is_in_its_view() -> None:
    models = schema_models()
    assert {"RulesFile", "BudgetConfig", "Condition", "TierSpec"} <= {m.__name__ for m in models}
    for model in models:
        assert own_behaviour(model) == set(), f"{model.__name__}: move {own_behaviour(model)} to its view"
        view = forms.VIEWS.get(model.__name__)
        if view is not None:
            assert view in model.__mro__, f"{model.__name__} does not inherit {view.__name__}"


def test_every_view_belongs_to_a_model_and_holds_no_fields() -> None:
    by_name = {m.__name__: m for m in schema_models()}
    for name, view in forms.VIEWS.items():
        assert name in by_name, name
        assert view in by_name[name].__mro__
        assert not getattr(view, "__annotations__", {}), (
            f"{view.__name__}: pydantic would take annotations for fields"
        )
        assert own_behaviour(view), view


def test_condition_fields_are_the_models_in_order() -> None:
    assert tuple(Condition.model_fields) == CONDITION_FIELDS


def test_the_constants_are_the_schemas() -> None:
    from tier_router.schema import common, embeddings

    assert common.NAME_PATTERN is units.NAME_PATTERN
    assert common.PRIORITIES is units.PRIORITIES
    assert embeddings.CHAT_ONLY_CONDITIONS is units.CHAT_ONLY_CONDITIONS
    assert percent_to_buckets("2.5%") == 250


def test_a_key_record_has_the_keys_file_entrys_fields() -> None:
    assert [f.name for f in dataclasses.fields(KeyRecord)] == list(KeyEntry.model_fields)
    entry = KeyEntry(name="ci", sha256="a" * 64, rpm=5, tiers=["budget"])
    record = entry.record()
    assert record == KeyRecord(name="ci", sha256="a" * 64, rpm=5, tiers=["budget"])
    assert record.as_dict() == entry.model_dump(exclude_none=True)
