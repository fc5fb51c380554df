"""`json`: when the request asked for JSON (`response_format` json_object or json_schema), the
answer's text must be valid JSON — and, for json_schema, conform to
`response_format.json_schema.schema` (through `schemas`: compiled once, cached; a schema that
cannot be checked lets the answer pass, counted).

Strict JSON: NaN and Infinity (which Python's json reads) fail. A choice with tool calls and no
text passes (tool_args checks those); `message.refusal` fails (a refusal is not the JSON asked
for). Reasons give line and column, or the JSON path and keyword, never the text.

On a held stream it decides early once the first non-blank character cannot start JSON
("Sure! Here is..." or a ```json fence): no later text can make that valid.
"""

from __future__ import annotations

import json
from typing import Any

from tier_router.errors import RouterError
from tier_router.validators import schemas
from tier_router.validators.base import Ask, Choice, Validator

JSON_TYPES = ("json_object", "json_schema")
JSON_WHITESPACE = " \t\r\n"
VALUE_STARTS = frozenset('{["-0123456789')
LITERALS = ("true", "false", "null")


class NotJson(RouterError, ValueError):
    """A constant Python reads but JSON has not (NaN, Infinity)."""


def reject_constant(name: str) -> Any:
    raise NotJson(name)


DECODER = json.JSONDecoder(parse_constant=reject_constant)


def parse(text: str) -> tuple[Any, str | None]:
    """(the value, None), or (None, why the text is not JSON) — no text in the reason."""
    try:
        return DECODER.decode(text), None
    except json.JSONDecodeError as exc:
        what = "empty" if not text.strip() else "not valid JSON"
        return None, f"{what} (line {exc.lineno}, column {exc.colno})"
    except NotJson:
        return None, "not valid JSON (NaN or Infinity)"
    except RecursionError:
        return None, "not valid JSON (nested too deeply to read)"
    except ValueError:  # e.g. an integer over Python's digit limit
        return None, "not valid JSON (a number too long to read)"


def schema_of(ask: Ask) -> Any:
    fmt = ask.response_format or {}
    if fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    return spec.get("schema") if isinstance(spec, dict) else None


class JsonOutput(Validator):
    kind = "json"

    def applies(self, ask: Ask) -> bool:
        return ask.response_format is not None and ask.response_format.get("type") in JSON_TYPES

    def schemas(self, ask: Ask) -> tuple[Any, ...]:
        schema = schema_of(ask)
        return () if schema is None else (schema,)

    def check(self, choice: Choice, ask: Ask) -> str | None:
        if choice.refusal is not None:
            return "the model refused (message.refusal) instead of answering in JSON"
        if choice.tool_calls and not choice.text.strip():
            return None
        value, problem = parse(choice.text)
        if problem is not None:
            return problem
        schema = schema_of(ask)
        if schema is None:
            return None
        failed = schemas.violation(schema, value)
        return f"does not match the schema: {failed}" if failed else None

    def early(self, text: str, ask: Ask) -> str | None:
        if not self.applies(ask):
            return None
        start = len(text) - len(text.lstrip(JSON_WHITESPACE))
        head = text[start : start + 5]
        if (
            not head
            or head[0] in VALUE_STARTS
            or any(word.startswith(head[: len(word)]) for word in LITERALS)
        ):
            return None
        line = text.count("\n", 0, start) + 1
        column = start - (text.rfind("\n", 0, start) + 1) + 1
        return f"not valid JSON (line {line}, column {column})"
