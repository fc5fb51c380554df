"""Response validators: one interface, one small class per check (one module each).

A validator reads an answer the way the client will see it (`Reply`, built once from the
OpenAI-shaped completion every provider adapter returns) and what the request asked for
(`Ask`: its response format, its tools), and says what is wrong with one choice — or nothing.
It never sees or returns prompt or answer text in its reason: reasons go into headers and log
lines, so they name positions, types and validator keywords, never content.

Adding a validator is one module with one `Validator` subclass plus one line in
`validators.registry.KINDS`. Options come from the rules file (`configure`), are checked at
load (a `ValueError` there names the problem), and everything that can be compiled (regexes,
schemas) is compiled then, not per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str
    """The raw arguments text, as the model produced it (JSON when the model behaved)."""


@dataclass(frozen=True, slots=True)
class Choice:
    """One choice of an answer: its text, tool calls, and why it ended."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    refusal: str | None = None
    """OpenAI's `message.refusal` (structured-output refusals), when the provider set it."""


@dataclass(frozen=True, slots=True)
class Reply:
    choices: tuple[Choice, ...]

    @classmethod
    def of(cls, completion: Mapping[str, Any]) -> Reply:
        """From an OpenAI `chat.completion` object (what every adapter returns). Content given
        as a list of parts counts its text parts; a deprecated `function_call` reads as one
        tool call; anything malformed reads as empty."""
        choices = completion.get("choices")
        out: list[Choice] = []
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            message = message if isinstance(message, dict) else {}
            calls = message.get("tool_calls")
            tool_calls = tuple(
                ToolCall(
                    str(fn.get("name") or ""),
                    fn.get("arguments") if isinstance(fn.get("arguments"), str) else "",
                )
                for call in (calls if isinstance(calls, list) else ())
                if isinstance(call, dict) and isinstance(fn := call.get("function"), dict)
            )
            legacy = message.get("function_call")  # the deprecated `functions` form's answer
            if not tool_calls and isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
                args = legacy.get("arguments")
                tool_calls = (ToolCall(legacy["name"], args if isinstance(args, str) else ""),)
            refusal = message.get("refusal")
            finish = choice.get("finish_reason")
            out.append(
                Choice(
                    text_of(message.get("content")),
                    tool_calls,
                    finish if isinstance(finish, str) else None,
                    refusal if isinstance(refusal, str) and refusal else None,
                )
            )
        return cls(tuple(out))


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


@dataclass(frozen=True, slots=True)
class Ask:
    """What the request asked of the answer (read once per validated request)."""

    response_format: Mapping[str, Any] | None = None
    tools: Mapping[str, Any] = field(default_factory=dict)
    """Function name → its `parameters` JSON schema (None when the tool gives none)."""

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Ask:
        fmt = body.get("response_format")
        tools: dict[str, Any] = {}
        for tool in body.get("tools") or ():
            fn = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                tools[fn["name"]] = fn.get("parameters")
        for fn in body.get("functions") or ():  # the deprecated form
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                tools.setdefault(fn["name"], fn.get("parameters"))
        return cls(fmt if isinstance(fmt, dict) else None, tools)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an answer failed validation: the validator's name (its rules-file name), the
    choice's index, and a reason free of prompt and answer text."""

    validator: str
    reason: str
    choice: int = 0

    def header(self) -> str:
        """`x-router-validation`: "json: not valid JSON (line 1, column 9)"."""
        return f"{self.validator}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"validator": self.validator, "reason": self.reason, "choice": self.choice}


class Validator:
    """One check of one choice. Subclasses set `kind` and implement `check`; those that can
    decide on a stream's first characters implement `early` too."""

    kind: ClassVar[str]
    """The registry key, and the rules-file key (`on: [truncated, {min_length: 20}]`)."""
    name: str
    """How failures are reported: the kind, or the name of a `validators:` entry."""

    def __init__(self) -> None:
        self.name = self.kind

    @classmethod
    def configure(cls, options: Any) -> Self:
        """Build from the rules file's options (None when the validator is named bare).
        Raise ValueError with a reason an operator can act on."""
        if options not in (None, {}, True):
            raise ValueError(f"{cls.kind} takes no options")
        return cls()

    def applies(self, ask: Ask) -> bool:
        """Whether this request gives the validator anything to check (json: only when
        `response_format` asks for JSON). Checked once per request."""
        return True

    def check(self, choice: Choice, ask: Ask) -> str | None:
        """The reason `choice` is unacceptable, or None."""
        raise NotImplementedError

    def schemas(self, ask: Ask) -> tuple[Any, ...]:
        """The JSON schemas `check` may compile for this request (`validators.schemas`): a
        cascade checks a request whose schema is new off the event loop."""
        return ()

    def early(self, text: str, ask: Ask) -> str | None:
        """On a held-back stream, the text so far: a reason to give up on the answer before it
        ends, or None (keep reading). Only for checks a longer answer cannot undo."""
        return None


def validate(validators: tuple[Validator, ...], reply: Reply, ask: Ask) -> Failure | None:
    """The first failure over every choice (an answer with several choices passes only when
    all do), or None. An answer with no choice at all fails."""
    active = [v for v in validators if v.applies(ask)]
    if not active:
        return None
    if not reply.choices:
        return Failure(active[0].name, "the answer has no choices")
    for index, choice in enumerate(reply.choices):
        for validator in active:
            reason = validator.check(choice, ask)
            if reason is not None:
                return Failure(validator.name, reason, index)
    return None


@dataclass(frozen=True, slots=True)
class Cascade:
    """A compiled `cascade:` (of a tier or a rule): when the answer fails one of `checks`,
    the request is sent again to tier `to`'s chain."""

    to: str
    checks: tuple[Validator, ...]
    hold_stream: bool = False
    """`stream: hold`: a streamed answer is held back whole and validated before its first
    byte goes out (and may escalate); otherwise streamed answers pass through unvalidated."""
    source: str = ""
    """Where it was declared: "rule 'x'" or "tier 'y'" (for explain and errors)."""
