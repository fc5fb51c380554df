"""Compiled rules: a rules file validated at build time, loaded at start-up without pydantic or
YAML (the cold start of a Lambda function: docs/coldstart.md).

    python -m tier_router.routing.compiled rules/router.yaml [...]   # writes router.yaml.compiled.json

Making one runs the full loader (`routing.loader.load_rules`: YAML, the pydantic models, every
cross-check, the regexes compiled), then writes the validated models' data (field values,
which fields the file set, private state) as JSON next to the rules file. Loading one
(`load_rules_fast`) rebuilds that data as runtime forms (`schema.forms`: plain objects carrying
the models' behaviour) and compiles them with the same code the full loader ends with
(`routing.compile`), so the router decides the same.

The file's first line is a header: the format version, the SHA-256 of the rules file it was
made from, of the schema's code (`schema/*.py` and this module), and of the rest of the file.
At load, a compiled form that is missing (where one is expected), stale (the rules file or
the schema changed since) or corrupt is not used: the rules file is loaded in full, with one
warning line saying why. Stale rules are never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tier_router.errors import ConfigError
from tier_router.routing.compile import compile_rules
from tier_router.schema.forms import Form, form_class

if TYPE_CHECKING:
    from tier_router.routing.engine import Rules

log = logging.getLogger("tier_router")
FORMAT = 1
SUFFIX = ".compiled.json"
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"


class CompiledRulesError(ConfigError):
    """A compiled rules file that cannot be used (the message says why; never raised to a
    caller: the rules file is then loaded in full)."""


def compiled_path(rules: Path) -> Path:
    return rules.with_name(rules.name + SUFFIX)


def schema_digest() -> str:
    """The schema's code (models, views, constants) and this module's: a change to either can
    change what a compiled form means."""
    digest = hashlib.sha256(f"format {FORMAT}\n".encode())
    for path in (*sorted(SCHEMA_DIR.glob("*.py")), Path(__file__)):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# --- making one (build time: imports the full loader) --------------------------------------


def compile_file(rules: Path) -> Path:
    """Validate `rules` with the full loader and write its compiled form; returns its path.
    Raises `RulesError` (the loader's, every problem) for a file that does not load."""
    from tier_router.routing.loader import load_rules

    source = rules.read_bytes()
    spec = load_rules(rules).spec
    classes: dict[str, dict[str, Any]] = {}
    payload = json.dumps(
        {"classes": classes, "spec": encode(spec, classes, "spec")},
        allow_nan=False,
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    header = {
        "format": FORMAT,
        "source": rules.name,
        "source_sha256": hashlib.sha256(source).hexdigest(),
        "schema_sha256": schema_digest(),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    target = compiled_path(rules)
    target.write_bytes(json.dumps(header).encode() + b"\n" + payload + b"\n")
    return target


def encode(value: Any, classes: dict[str, dict[str, Any]], where: str) -> Any:
    """A validated model tree as JSON: `{"$m": class, ...}` a model, `{"$d": {...}}` a dict,
    `{"$t": [...]}` a tuple, `{"$n": "0.3"}` a Decimal, lists and scalars as they are;
    anything else is refused."""
    from decimal import Decimal

    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        cls = type(value)
        names = list(cls.model_fields)
        known = classes.setdefault(
            cls.__name__,
            {
                "fields": names,
                "aliases": {n: f.alias for n, f in cls.model_fields.items() if f.alias and f.alias != n},
                "module": cls.__module__,
            },
        )
        if known["fields"] != names or known["module"] != cls.__module__:
            raise TypeError(f"{where}: two schema classes are named {cls.__name__!r}")
        private = value.__pydantic_private__ or {}
        return {
            "$m": cls.__name__,
            "f": {n: encode(getattr(value, n), classes, f"{where}.{n}") for n in names},
            "s": sorted(value.model_fields_set),
            "p": {k: encode(v, classes, f"{where}.{k}") for k, v in private.items()},
        }
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where}: a mapping with keys that are not strings")
        return {"$d": {k: encode(v, classes, f"{where}.{k}") for k, v in value.items()}}
    if isinstance(value, tuple):
        return {"$t": [encode(v, classes, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, classes, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, Decimal):  # exact shares (budgets.region_shares), kept exact
        return {"$n": str(value)}
    raise TypeError(f"{where}: cannot compile a {type(value).__name__}")


# --- loading one (start-up: no pydantic, no YAML) -------------------------------------------


def load_rules_fast(path: Path | str, *, expect_compiled: bool = False) -> Rules:
    """The rules of `path`, from its compiled form when that is present and current, else from
    the full loader (one warning line when a compiled form was expected or could not be used).
    Raises the loader's `RulesError` for a rules file that does not load."""
    path = Path(path)
    compiled = compiled_path(path)
    try:
        return load_compiled(path, compiled)
    except FileNotFoundError:
        if expect_compiled:
            log.warning("no compiled rules %s: loading %s in full (slower start)", compiled.name, path)
    except CompiledRulesError as exc:
        log.warning("compiled rules %s not used (%s): loading %s in full", compiled, exc, path)
    from tier_router.routing.loader import load_rules

    return load_rules(path)


def load_compiled(rules: Path, compiled: Path) -> Rules:
    """Raises FileNotFoundError (no compiled form) or CompiledRulesError (stale or corrupt)."""
    data = compiled.read_bytes()
    try:
        head, _, rest = data.partition(b"\n")
        header = json.loads(head)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise CompiledRulesError(f"format {header.get('format') if isinstance(header, dict) else '?'}")
        payload = rest.rstrip(b"\n")
        if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
            raise CompiledRulesError("corrupt: its content does not match its checksum")
        if hashlib.sha256(rules.read_bytes()).hexdigest() != header.get("source_sha256"):
            raise CompiledRulesError(f"stale: {rules.name} changed since it was compiled")
        if schema_digest() != header.get("schema_sha256"):
            raise CompiledRulesError("stale: made by another version of the router")
        body = json.loads(payload)
        spec = decode(body["spec"], body["classes"])
    except CompiledRulesError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON, or a shape not ours
        raise CompiledRulesError(f"corrupt: {type(exc).__name__}: {exc}") from None
    if not isinstance(spec, Form) or spec._kind != "RulesFile":
        raise CompiledRulesError("corrupt: not a rules file")
    return compile_rules(spec, rules)  # type: ignore[arg-type]


def decode(node: Any, classes: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [decode(v, classes) for v in node]
    if not isinstance(node, dict):
        return node
    if "$d" in node:
        return {k: decode(v, classes) for k, v in node["$d"].items()}
    if "$t" in node:
        return tuple(decode(v, classes) for v in node["$t"])
    if "$n" in node:
        from decimal import Decimal  # only when a rules file has region shares

        return Decimal(node["$n"])
    kind = node["$m"]
    meta = classes[kind]
    cls = form_class(kind, tuple(meta["fields"]), meta["aliases"])
    fields = {name: decode(node["f"][name], classes) for name in meta["fields"]}
    private = {k: decode(v, classes) for k, v in node["p"].items()}
    return cls(fields, node["s"], private)


def main(argv: list[str] | None = None) -> int:
    """Compile each rules file named; exit 1 (every problem printed) if one does not load."""
    from tier_router.routing.loader import RulesError

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m tier_router.routing.compiled RULES.yaml [...]", file=sys.stderr)
        return 2
    failed = 0
    for name in args:
        try:
            target = compile_file(Path(name))
        except RulesError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        print(f"{name} -> {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
