"""JSON Schema checks shared by `json` (response_format json_schema) and `tool_args` (each
tool's `parameters`): compiled once per distinct schema, cached, and safe on hostile schemas.

The library is fastjsonschema (imported on the first schema check, never at cold start): it
imports in ~3 ms, where jsonschema 4.26 takes ~50-75 ms, and validates a 2 KB answer in tens of
µs, where jsonschema takes ~1.7 ms (bench/validators.py). Its price is the first compile of a
schema: it generates and compiles Python code, ~5 ms for a small schema and ~10 ms per KB for
larger ones, paid once per distinct schema (the cache); the size bound caps it (~150-200 ms at
MAX_SCHEMA_CHARS). jsonschema-rs (a Rust extension: compiles in ~0.3 ms per 1.6 KB, validates in
µs) would remove that price, for ~15 MB more in the Lambda package.

Because the library turns the schema into code, a schema from a request is first held to
bounds and cleaned of what could reach outside (see `screen`):

- size (canonical JSON) and nesting depth are bounded, so compile cost is bounded;
- `$ref` must be local (`#...`), and every URI scheme is given a handler that refuses, so no
  schema makes the router fetch anything;
- numeric keywords must be finite numbers, `type` a known type name;
- `pattern`/`patternProperties` run on RE2 (the compiled Python regexes are swapped out), so a
  pattern cannot backtrack catastrophically on an answer; `format` is an annotation (the
  JSON Schema default), defaults are never filled in.

Keywords are those of drafts 4-7 and 2019-09 as fastjsonschema implements them; keywords only
2020-12 has (prefixItems, unevaluatedProperties/Items, dependentRequired/Schemas, $dynamicRef)
are ignored, so such a schema is checked for the rest. OpenAI's strict mode uses none of them.

A schema that fails these checks or that the library cannot compile is "cannot check": the
answer passes, `STATS.uncheckable` counts it and a debug line says why (no schema content).
Validation that cannot finish (a `$ref` cycle: RecursionError) or that runs out of time (the
`time_limit` module: `CHECK_TIME_S` unless the caller set a tighter limit) also passes, counted
in `STATS.unfinished`. Compiled validators (and "cannot check" verdicts) are kept in an LRU of
`CACHE_SIZE`, keyed by a blake2b hash of the schema's canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

from tier_router.errors import RouterError
from tier_router.provider_keys import KEY_SHAPES
from tier_router.validators import regex, time_limit

log = logging.getLogger("tier_router.validators")

CACHE_SIZE = 256
MAX_SCHEMA_CHARS = 16 * 1024
MAX_SCHEMA_DEPTH = 64
MAX_SCHEMA_NODES = 20_000
CHECK_TIME_S = 1.0
"""The most a schema check may take when no tighter `time_limit` is in force (see there)."""
NUMERIC = (
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
    "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains", "maxContains",
)  # fmt: skip
TYPES = frozenset({"string", "number", "integer", "object", "array", "boolean", "null"})
SAFE_NAME = re2.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")
"""A name a reason may show (a declared property, a required one, an offered tool), unless it
is shaped like a provider key (`shown`)."""
NAME_TOKEN = re2.compile(r"\.([^.\[]*)|\[([^\]]*)\]")


class Uncheckable(RouterError):
    """The schema cannot be checked (reason: a short fixed phrase, no schema content)."""


@dataclass(slots=True)
class Stats:
    compiled: int = 0
    cache_hits: int = 0
    uncheckable: int = 0
    unfinished: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


STATS = Stats()


@dataclass(frozen=True, slots=True)
class Compiled:
    """One compiled schema: `violation(instance)` → a reason free of instance values, or None."""

    run: Callable[[Any], Any]
    names: frozenset[str]
    """Property names the schema declares (safe ones): path segments shown as written."""

    def violation(self, instance: Any) -> str | None:
        if not time_limit.limited():
            with time_limit.time_limit(CHECK_TIME_S):
                return self.violation(instance)
        from fastjsonschema import JsonSchemaValueException

        try:
            self.run(instance)
        except JsonSchemaValueException as exc:
            return f"{json_path(exc.name, self.names)}: {phrase(exc.rule, exc.rule_definition, exc.value)}"
        except RecursionError:
            STATS.unfinished += 1
            log.debug("schema check did not finish (recursion); the answer passes")
        except time_limit.OutOfTime:
            STATS.unfinished += 1
            log.debug("schema check ran out of time; the answer passes")
        except Exception as exc:  # the generated code failed on this instance: cannot check
            STATS.unfinished += 1
            log.debug("schema check failed to run (%s); the answer passes", type(exc).__name__)
        return None


@dataclass(frozen=True, slots=True)
class NotCheckable:
    reason: str


_cache: OrderedDict[bytes, Compiled | NotCheckable] = OrderedDict()
_lock = threading.Lock()  # validation may run in a worker thread; the cache stays consistent


def violation(schema: Any, instance: Any) -> str | None:
    """Why `instance` does not conform to `schema`, or None (also when it cannot be checked)."""
    compiled = compiled_for(schema)
    return compiled.violation(instance) if compiled is not None else None


def is_compiled(schema: Any) -> bool:
    """Whether checking against `schema` compiles nothing (its verdict is in the cache)."""
    try:
        canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return True  # "cannot check", without compiling
    key = hashlib.blake2b(canonical.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    with _lock:
        return key in _cache


def compiled_for(schema: Any) -> Compiled | None:
    """The cached compiled validator of `schema`, or None when it cannot be checked."""
    try:
        canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return uncheckable("not JSON")
    key = hashlib.blake2b(canonical.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    with _lock:
        entry = _cache.get(key)
        if entry is not None:
            _cache.move_to_end(key)
            STATS.cache_hits += 1
    if entry is None:
        entry = build(canonical)
        with _lock:
            _cache[key] = entry
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    if isinstance(entry, NotCheckable):
        return uncheckable(entry.reason)
    return entry


def uncheckable(reason: str) -> None:
    STATS.uncheckable += 1
    STATS.reasons[reason] = STATS.reasons.get(reason, 0) + 1
    log.debug("response schema cannot be checked (%s); the answer passes", reason)
    return None


def build(canonical: str) -> Compiled | NotCheckable:
    """Compile a fresh copy (read back from the canonical JSON): the library rewrites `$ref`s
    in place, and the request's own schema may still be sent upstream (an escalation)."""
    try:
        if len(canonical) > MAX_SCHEMA_CHARS:
            raise Uncheckable("too large")
        schema = json.loads(canonical)
        if not isinstance(schema, dict | bool):
            raise Uncheckable("not a schema")
        names = screen(schema)
        run = compile_schema(schema)
    except Uncheckable as exc:
        return NotCheckable(str(exc))
    except RecursionError:
        return NotCheckable("nested too deeply")
    except Exception as exc:  # the library rejected it (JsonSchemaDefinitionException, re.error, ...)
        return NotCheckable(f"does not compile ({type(exc).__name__})")
    STATS.compiled += 1
    return Compiled(run, names)


def compile_schema(schema: Any) -> Callable[[Any], Any]:
    import fastjsonschema

    # What `fastjsonschema.compile` does, with the time limit's ticks compiled in (time_limit)
    resolver, generator = fastjsonschema._factory(
        schema, REFUSE_REMOTE, {}, use_default=False, use_formats=False
    )
    code = time_limit.with_ticks(generator.func_code)
    state = {**generator.global_state, time_limit.TICK: time_limit.tick}
    exec(code, state)  # noqa: S102 - the library's own generated code, from a screened schema
    run: Callable[[Any], Any] = state[resolver.get_scope_name()]
    patterns = state.get("REGEX_PATTERNS")
    if isinstance(patterns, dict):
        for source in list(patterns):
            try:  # JSON Schema patterns are unanchored searches, `$` = end of text: as in RE2
                patterns[source] = re2.compile(source, regex.options())
            except re2.error:
                raise Uncheckable("a pattern RE2 cannot compile") from None
    return run


class _RefuseRemote(Mapping[str, Callable[[str], Any]]):
    """Every URI scheme "has a handler", and the handler refuses: fastjsonschema falls back
    to urllib for schemes without one."""

    def __getitem__(self, scheme: str) -> Callable[[str], Any]:
        return refuse

    def __contains__(self, scheme: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def refuse(uri: str) -> Any:
    raise Uncheckable("a remote $ref")


REFUSE_REMOTE = _RefuseRemote()


def screen(schema: Any) -> frozenset[str]:
    """Hold a schema to the bounds (raise Uncheckable) and collect its safe property names."""
    names: set[str] = set()
    pending: list[tuple[Any, int]] = [(schema, 0)]
    nodes = 0
    while pending:
        node, depth = pending.pop()
        nodes += 1
        if depth > MAX_SCHEMA_DEPTH:
            raise Uncheckable("nested too deeply")
        if nodes > MAX_SCHEMA_NODES:
            raise Uncheckable("too large")
        if isinstance(node, list):
            pending += [(item, depth + 1) for item in node]
            continue
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
            raise Uncheckable("a remote $ref")
        for key in NUMERIC:
            value = node.get(key)
            if value is not None and not finite(value) and not isinstance(value, bool | dict):
                raise Uncheckable(f"{key} is not a number")
        kind = node.get("type")
        if kind is not None and not isinstance(kind, dict):
            kinds = kind if isinstance(kind, list) else [kind]
            if not all(isinstance(k, str) and k in TYPES for k in kinds):
                raise Uncheckable("an unknown type")
        props = node.get("properties")
        if isinstance(props, dict):
            names.update(k for k in props if shown(k))
        required = node.get("required")
        if isinstance(required, list):
            names.update(k for k in required if shown(k))
        pending += [(value, depth + 1) for value in node.values() if isinstance(value, dict | list)]
    return frozenset(names)


def shown(name: object) -> bool:
    """Whether a reason may show `name`: a plain name (SAFE_NAME) not shaped like a provider
    key (a schema or a tool may be named with a secret: reasons go into headers and logs)."""
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None and not KEY_SHAPES.search(name)


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def json_path(name: str, names: frozenset[str]) -> str:
    """fastjsonschema's "data.items[2].price" as "$.items[2].price"; a key the schema does not
    declare (so it came from the answer) shows as `*`, an index only when it is a number."""
    parts = ["$"]
    for key, index in NAME_TOKEN.findall(name[4:] if name.startswith("data") else ""):
        if index:
            parts.append(f"[{index}]" if index.isdigit() and len(index) < 10 else "[*]")
        else:
            parts.append(f".{key}" if key in names else ".*")
    return "".join(parts)


def phrase(rule: str | None, definition: Any, value: Any) -> str:
    """What the failed keyword asks for, from the schema only (never the instance's values)."""
    if rule == "type":
        kinds = definition if isinstance(definition, list) else [definition]
        return "must be " + " or ".join(k for k in kinds if isinstance(k, str) and k in TYPES)
    if rule == "required":
        missing = [k for k in definition or () if isinstance(value, dict) and k not in value]
        named = [f"'{k}'" for k in missing if shown(k)]
        return "missing required property " + ", ".join(named) if named else "missing a required property"
    if rule == "additionalProperties":
        return "has a property the schema does not allow (additionalProperties)"
    if rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        bound = f" {definition!r}" if finite(definition) else ""
        return f"fails {rule}{bound}"
    if rule in ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"):
        return f"fails {rule} {definition}" if finite(definition) else f"fails {rule}"
    fixed = {
        "enum": "must be one of the schema's enum values",
        "const": "must equal the schema's const",
        "pattern": "does not match the schema's pattern",
        "anyOf": "matches none of anyOf",
        "oneOf": "must match exactly one of oneOf",
        "not": "matches the schema under not",
        "uniqueItems": "has duplicate items (uniqueItems)",
    }
    if rule in fixed:
        return fixed[rule]
    if rule is None:  # a `false` schema
        return "is not allowed by the schema"
    return f"fails {rule}" if shown(rule) else "fails the schema"
