"""The one use of fastjsonschema's internals (`validators.schemas.compile_schema`: the library's
own `_factory`, its generated source, its global state and scope name — so the time limit's
ticks can be compiled into the generated code). If an upgrade changes any of it, this fails
first, naming what changed, instead of every schema check quietly becoming "cannot check"."""

from __future__ import annotations

import fastjsonschema
import pytest
from tier_router.validators import schemas, time_limit

PINNED = "2.22"


def test_the_installed_version_is_the_one_the_wrapper_was_written_for() -> None:
    assert fastjsonschema.VERSION.startswith(PINNED + "."), (
        f"fastjsonschema {fastjsonschema.VERSION}: re-check validators/schemas.compile_schema"
        f" against its _factory / CodeGenerator, then update PINNED and pyproject.toml"
    )


def test_the_internals_compile_schema_uses_are_there() -> None:
    resolver, generator = fastjsonschema._factory(
        {"type": "object", "required": ["a"]}, schemas.REFUSE_REMOTE, {}, use_default=False, use_formats=False
    )
    assert isinstance(generator.func_code, str)
    assert isinstance(generator.global_state, dict)
    assert isinstance(resolver.get_scope_name(), str)


def test_compiled_code_checks_and_ticks() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    run = schemas.compile_schema(schema)
    with time_limit.time_limit(10):  # the generated code ticks: it runs under a limit
        run({"a": 1})
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            run({"a": "x"})
    with time_limit.time_limit(-1), pytest.raises(time_limit.OutOfTime):  # past already: the first tick
        run({"a": 1})
