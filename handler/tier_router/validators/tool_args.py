"""`tool_args`: when the request offered tools (or functions), each tool call must name one of
them, and its arguments must be a JSON object that conforms to that tool's `parameters` schema
(the `schemas` compile cache, shared with `json`).

Empty arguments read as `{}` (some providers send "" for a call without parameters). A tool
the request did not offer is not named in the reason (the name came from the model); a tool
it did offer is, when its name is plain (letters, digits, `_`, `-`) and not shaped like a
provider key.
"""

from __future__ import annotations

from typing import Any

from tier_router.validators import schemas
from tier_router.validators.base import Ask, Choice, Validator
from tier_router.validators.json_output import parse

KINDS_OF = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


class ToolArgs(Validator):
    kind = "tool_args"

    def applies(self, ask: Ask) -> bool:
        return bool(ask.tools)

    def schemas(self, ask: Ask) -> tuple[Any, ...]:
        return tuple(schema for schema in ask.tools.values() if schema is not None)

    def check(self, choice: Choice, ask: Ask) -> str | None:
        for index, call in enumerate(choice.tool_calls):
            if call.name not in ask.tools:
                return f"tool call {index}: names a tool the request did not offer"
            label = f"tool call {index}"
            if schemas.shown(call.name):
                label += f" ({call.name})"
            text = call.arguments if call.arguments.strip() else "{}"
            value, problem = parse(text)
            if problem is not None:
                return f"{label}: arguments are {problem}"
            if not isinstance(value, dict):
                return f"{label}: arguments are {KINDS_OF.get(type(value), 'a number')}, not a JSON object"
            schema = ask.tools[call.name]
            if schema is not None:
                failed = schemas.violation(schema, value)
                if failed:
                    return f"{label}: arguments do not match the tool's parameters: {failed}"
        return None
