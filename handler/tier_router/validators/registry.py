"""Every validator kind, by its rules-file key: adding one is a module and one line here."""

from __future__ import annotations

from typing import Any

from tier_router.errors import ConfigError
from tier_router.validators.base import Validator
from tier_router.validators.json_output import JsonOutput
from tier_router.validators.length import MaxLength, MinLength
from tier_router.validators.patterns import MustMatch, MustNotMatch
from tier_router.validators.refusal import Refusal
from tier_router.validators.tool_args import ToolArgs
from tier_router.validators.truncated import Truncated

KINDS: dict[str, type[Validator]] = {
    Truncated.kind: Truncated,
    JsonOutput.kind: JsonOutput,
    ToolArgs.kind: ToolArgs,
    Refusal.kind: Refusal,
    MinLength.kind: MinLength,
    MaxLength.kind: MaxLength,
    MustMatch.kind: MustMatch,
    MustNotMatch.kind: MustNotMatch,
}


class ValidatorConfigError(ConfigError):
    """A validator entry of the rules file is invalid: `where` (e.g. "on[2]") and the reason."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}" if where else reason)


def build_one(item: Any, named: dict[str, Validator], where: str = "") -> Validator:
    """One entry: a bare kind or the name of a `validators:` entry (`truncated`,
    `no-apology`), or a one-key mapping `{kind: options}` (`{min_length: 20}`)."""
    if isinstance(item, str):
        if item in named:
            return named[item]
        if item in KINDS:
            return configure(item, None, where)
        raise ValidatorConfigError(where, unknown(item, named))
    if isinstance(item, dict) and len(item) == 1:
        ((kind, options),) = item.items()
        if not isinstance(kind, str) or kind not in KINDS:
            raise ValidatorConfigError(where, unknown(str(kind), {}))
        return configure(kind, options, where)
    raise ValidatorConfigError(where, "give a validator's name, or a one-key mapping {kind: options}")


def configure(kind: str, options: Any, where: str) -> Validator:
    try:
        return KINDS[kind].configure(options)
    except ValueError as exc:
        raise ValidatorConfigError(f"{where}.{kind}" if where else kind, str(exc)) from None


def build_named(entries: dict[str, Any]) -> dict[str, Validator]:
    """The rules file's `validators:` section: name → a configured validator reported under
    that name. Raises ValidatorConfigError naming the entry."""
    named: dict[str, Validator] = {}
    for name, item in entries.items():
        validator = build_one(item, {}, f"validators.{name}")
        validator.name = name
        named[name] = validator
    return named


def build_validators(
    items: list[Any], named: dict[str, Validator], where: str = "on"
) -> tuple[Validator, ...]:
    """A cascade's `on:` list. Raises ValidatorConfigError naming the entry."""
    return tuple(build_one(item, named, f"{where}[{i}]") for i, item in enumerate(items))


def unknown(name: str, named: dict[str, Validator]) -> str:
    known = sorted({*KINDS, *named})
    return f"unknown validator {name!r} (known: {', '.join(known)})"
