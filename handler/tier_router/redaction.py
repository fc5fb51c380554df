"""Secrets the router holds, scrubbed from everything it passes on and everything it logs.

A provider may echo what it was sent — its key in a 200 body, in `x-request-id` or
`x-ratelimit-*`, in a `www-authenticate` header, in an error body — and a client may have
pasted a router key into its prompt. One `Redactor` per process (built by the gateway) knows
every secret the router holds in plain text: the provider keys as resolved (environment, or
SSM as each fetch lands: `add` on every change, so a rotated key is known from its first
use), the router keys of `TIER_ROUTER_API_KEYS` (a keys file holds only hashes: nothing to
redact with) and the AWS secret key and session token. It replaces each with `[redacted]`:

- whole answers and forwarded headers (`bytes` / `text`: a scan for each secret, `bytes.find`
  speed, and a substitution only when one is there);
- streams (`StreamScrubber`): the SSE parser hands over whole events, so a key whose bytes
  arrive in two network reads is whole by then; a key whose text is spread over several
  content deltas (or tool-call argument pieces) is caught by holding back, per choice and
  field, the end of a delta that could be the start of a secret (HOLD_MIN characters or
  more) until the next delta says whether it is. A key cut within its first one or two
  characters shows those to the client ("sk", a public prefix for real keys): holding back
  every delta ending in "s" would re-encode a good share of an English stream;
- log records (`redact_logs`): a record factory, so every logger (ours, httpx, httpcore's
  debug traces of upstream response headers, uvicorn, asyncio) and every handler, however
  configured and whenever, formats scrubbed text.

Secrets shorter than `MIN_SECRET_CHARS` are not redacted anywhere: replacing "test" or
"1234" in every answer and log line would mangle ordinary text, and a key that short protects
nothing anyway (the gateway warns about it by name). Forms a provider could encode a key in
(base64, `\\u` escapes) are beyond a literal scan; the JSON- and repr-escaped forms of a key
that needs escaping are scanned for too.
"""

from __future__ import annotations

import json
import logging
import re
import weakref
from collections.abc import Iterable
from typing import Any

MIN_SECRET_CHARS = 8
REDACTED = "[redacted]"
FEW = 2
"""Up to this many secret spellings, a scan (`in`) for each; beyond, one regex search (measured:
with 8 or 20 keys the regex is 4-10 times faster on a 2 KB body, with 1-3 about even)."""
HOLD_MIN = 3
"""A streamed delta's end is held back when it is the first HOLD_MIN or more characters of a
secret; a secret split sooner than that shows the client its first one or two characters."""
TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")
"""The delta fields a client shows as text (tool-call arguments are scrubbed too)."""


def spellings(secret: str) -> set[str]:
    """The secret as text may carry it: as is, JSON-escaped, and as Python's repr writes it
    (httpcore logs header values as bytes reprs). For an ordinary key, all the same."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        repr(secret.encode())[2:-1],
    }


class Compiled:
    """One immutable set of secrets, ready to scan for (swapped whole on every change)."""

    __slots__ = ("grams", "max_len", "needles", "raw", "secrets", "text")

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(sorted(set(secrets), key=len, reverse=True))  # longest first
        self.needles = tuple(s.encode() for s in self.secrets)
        self.text = re.compile("|".join(map(re.escape, self.secrets)))
        self.raw = re.compile(b"|".join(map(re.escape, self.needles)))
        self.max_len = max(map(len, self.secrets))
        self.grams = frozenset(
            s[i : i + HOLD_MIN] for s in self.secrets for i in range(len(s) - HOLD_MIN + 1)
        )

    def found(self, text: str) -> bool:
        """Some secret is in `text` (see FEW)."""
        if len(self.secrets) > FEW:
            return self.text.search(text) is not None
        for secret in self.secrets:  # noqa: SIM110 (a loop: no generator per delta)
            if secret in text:
                return True
        return False

    def held(self, text: str) -> int:
        """The length of the longest end of `text`, at least HOLD_MIN long, that begins some
        secret (0: none). Such an end finishes with a HOLD_MIN-gram of the secret: one set
        lookup (`grams`, the caller's) rules out nearly every delta."""
        for length in range(min(len(text), self.max_len - 1), HOLD_MIN - 1, -1):
            end = text[-length:]
            if any(s.startswith(end) and len(s) > length for s in self.secrets):
                return length
        return 0

    def redact_from(self, text: str, start: int) -> str:
        """`text[start:]` with every secret in `text` replaced — one that begins before `start`
        (in text the client already has) too, from `start` on."""
        out, at = [], start
        for match in self.text.finditer(text):
            begin, end = match.span()
            if end <= start:
                continue
            out += (text[at:begin] if begin > at else "", REDACTED)
            at = end
        out.append(text[at:])
        return "".join(out)


class Redactor:
    """Every secret the router holds, and where to scrub them (module doc)."""

    __slots__ = ("__weakref__", "_compiled", "_known")

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._known: frozenset[str] = frozenset()
        self._compiled: Compiled | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        """Know these secrets too (once known, a secret stays known: a key rotated out may be
        live for a while yet). Compiles only when something is new; never per request."""
        new = {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS} - self._known
        if new:
            self._known = self._known | new
            self._compiled = Compiled(spelling for s in self._known for spelling in spellings(s))

    def __bool__(self) -> bool:
        return self._compiled is not None

    def text(self, text: str) -> str:
        compiled = self._compiled
        if compiled is None or compiled.text.search(text) is None:
            return text
        return compiled.text.sub(REDACTED, text)

    def bytes(self, data: bytes) -> bytes:
        compiled = self._compiled
        if compiled is None:
            return data
        if len(compiled.needles) > FEW:
            if compiled.raw.search(data) is None:
                return data
        else:
            for needle in compiled.needles:  # a loop: no generator per call (one per streamed read)
                if needle in data:
                    break
            else:
                return data
        return compiled.raw.sub(REDACTED.encode(), data)

    def stream(self) -> StreamScrubber | None:
        """A scrubber for one stream, None when there is nothing to scrub."""
        compiled = self._compiled
        return None if compiled is None else StreamScrubber(compiled)


Field = tuple[int, str, int]
"""(choice index, field name, tool call index): where one run of streamed text goes on."""


class StreamScrubber:
    """One stream's chunks, scrubbed across chunk boundaries (module doc). Per choice and field
    it keeps the text held back (`_carry`: an end of at least HOLD_MIN characters that begins a
    secret) and the last HOLD_MIN - 1 characters sent (`_sent`): text already sent never ends
    in more of a secret than that, since anything longer is held back. A secret that began
    there (its first one or two characters: for real keys a public prefix like "sk") is
    redacted from where the new text starts. What is held back goes out with the
    next delta of the same field, with the choice's last chunk (its `finish_reason`), or at
    the end (`leftover`)."""

    __slots__ = ("_carry", "_compiled", "_last", "_sent")

    def __init__(self, compiled: Compiled) -> None:
        self._compiled = compiled
        self._carry: dict[Field, str] = {}
        self._sent: dict[Field, str] = {}
        self._last: dict[str, Any] | None = None

    def chunk(self, chunk: dict[str, Any]) -> bool:
        """Scrub one `chat.completion.chunk` in place; True when it changed."""
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list):
            return False
        self._last = chunk
        try:  # the common chunk first: one choice, a delta of text only, not the last
            (choice,) = choices
            delta = choice["delta"]
            if len(delta) == 1 and "content" in delta and not choice.get("finish_reason"):
                return self._field(delta, "content", (choice.get("index", 0), "content", -1))
        except (ValueError, TypeError, KeyError):
            pass
        changed = False
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            index = choice.get("index", 0)
            for name in TEXT_FIELDS:
                if name in delta:
                    changed |= self._field(delta, name, (index, name, -1))
            for n, call in enumerate(delta.get("tool_calls") or ()):
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    at = call.get("index", n)
                    changed |= self._field(function, "arguments", (index, "tool_calls", at))
            function = delta.get("function_call")
            if isinstance(function, dict):
                changed |= self._field(function, "arguments", (index, "function_call", -1))
            if choice.get("finish_reason") and self._carry:
                changed |= self._flush(delta, index)
        return changed

    def _field(self, holder: dict[str, Any], name: str, at: Field) -> bool:
        text = holder.get(name)
        if text.__class__ is not str:
            return False
        compiled = self._compiled
        sent = self._sent.get(at, "")
        carry = self._carry.pop(at, "") if self._carry else ""
        full = sent + carry + text
        if compiled.found(full):
            out = compiled.redact_from(full, len(sent))
            full = sent + out
        else:
            out = carry + text if carry else text
        if full[-HOLD_MIN:] in compiled.grams:
            held = min(compiled.held(full), len(out))
            if held:
                self._carry[at] = out[-held:]
                out = out[:-held]
        self._sent[at] = (sent + out)[1 - HOLD_MIN :]
        if out == text:
            return False
        holder[name] = out
        return True

    def _flush(self, delta: dict[str, Any], index: Any) -> bool:
        """The choice ends: what is held back for it goes out with this delta."""
        flushed = False
        for at in [at for at in self._carry if at[0] == index]:
            _, name, call = at
            text = self._carry.pop(at)
            if name == "tool_calls":
                calls = delta.setdefault("tool_calls", [])
                same = [c for n, c in enumerate(calls) if c.get("index", n) == call]
                holder = same[0].setdefault("function", {}) if same else None
                if holder is None:
                    calls.append({"index": call, "function": {"arguments": text}})
                else:
                    holder["arguments"] = (holder.get("arguments") or "") + text
            elif name == "function_call":
                holder = delta.setdefault("function_call", {})
                holder["arguments"] = (holder.get("arguments") or "") + text
            else:
                delta[name] = (delta.get(name) or "") + text
            flushed = True
        return flushed

    def leftover(self) -> dict[str, Any] | None:
        """At the end of a stream no `finish_reason` closed: a chunk with what is still held
        back (in the envelope of the last chunk), or None."""
        if not self._carry or self._last is None:
            return None
        indexes = sorted({at[0] for at in self._carry}, key=str)
        choices = []
        for index in indexes:
            delta: dict[str, Any] = {}
            self._flush(delta, index)
            choices.append({"index": index, "delta": delta, "finish_reason": None})
        return {**{k: v for k, v in self._last.items() if k not in ("choices", "usage")}, "choices": choices}


# -- logs ------------------------------------------------------------------------------------

_LOG_REDACTORS: weakref.WeakSet[Redactor] = weakref.WeakSet()
_FORMATTER = logging.Formatter()


def redact_logs(redactor: Redactor) -> None:
    """Scrub `redactor`'s secrets from every log record from now on, whatever logger makes it
    and whatever handler writes it. Installed once per process (a record factory wrapping the
    one in place); every gateway's redactor is consulted while it lives."""
    _LOG_REDACTORS.add(redactor)
    factory = logging.getLogRecordFactory()
    if getattr(factory, "tier_router_redacts", False):
        return

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        scrub_record(record)
        return record

    redacting_factory.tier_router_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)


def scrub_record(record: logging.LogRecord) -> None:
    """A record whose text holds a secret gets its scrubbed text as its message (args gone);
    any other record is left as it is (formatters that read `args` keep working)."""
    redactors = [r for r in _LOG_REDACTORS if r]
    if not redactors:
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: the handler reports it, as without us
        return
    clean = _scrub(redactors, message)
    if clean is not message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        text = _FORMATTER.formatException(record.exc_info)
        clean = _scrub(redactors, text)
        if clean is not text:
            record.exc_text = clean
    if record.stack_info:
        record.stack_info = _scrub(redactors, record.stack_info)


def _scrub(redactors: list[Redactor], text: str) -> str:
    for redactor in redactors:
        text = redactor.text(text)
    return text
