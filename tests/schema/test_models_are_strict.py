"""Every section of the rules file shares one strictness and one name pattern."""

from __future__ import annotations

import pydantic
import pytest
import tier_router.schema as schema
from tier_router.schema import Name, Strict

MODELS = sorted(
    (obj for obj in vars(schema).values() if isinstance(obj, type) and issubclass(obj, pydantic.BaseModel)),
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("model", MODELS, ids=lambda cls: cls.__name__)
def test_every_model_forbids_unknown_keys_and_is_frozen(model: type[pydantic.BaseModel]) -> None:
    assert issubclass(model, Strict)
    assert model.model_config.get("extra") == "forbid"
    assert model.model_config.get("frozen") is True


@pytest.mark.parametrize("name", ["premium", "gpt-4.1", "org/model@v2", "a:b+c", "9"])
def test_names(name: str) -> None:
    assert pydantic.TypeAdapter(Name).validate_python(name) == name


@pytest.mark.parametrize("name", ["", "-x", ".x", "has space", "ü", "x" * 129])
def test_bad_names(name: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        pydantic.TypeAdapter(Name).validate_python(name)


def test_on_cap_tier_uses_the_same_name_pattern() -> None:
    schema.BudgetConfig(on_cap="tier:org/model@v2")
    with pytest.raises(pydantic.ValidationError):
        schema.BudgetConfig(on_cap="tier:-x")
