"""RE2 for validators: compiled once at load (linear time in the answer, so no answer can
make a check backtrack catastrophically), searched safely on any answer text."""

from __future__ import annotations

import re2

MAX_MEM = 8 << 20
"""RE2's memory per pattern (its DFA); a pattern over it does not compile (a load error)."""


def options() -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False
    opts.max_mem = MAX_MEM
    opts.never_capture = True  # spans only: RE2 finds them with its DFAs (linear, fast), where
    # capture groups would need its NFA over the whole match (seconds for `(.*a){20}` on 1 MB)
    return opts


def compile_pattern(pattern: str, ignore_case: bool = False, where: str = "pattern") -> re2._Regexp:
    """Raise ValueError with RE2's reason for a pattern it cannot compile. `ignore_case` wraps
    the pattern only after it compiled alone (wrapping can make an invalid pattern valid)."""
    try:
        compiled = re2.compile(pattern, options())
        return re2.compile(f"(?i:{pattern})", options()) if ignore_case else compiled
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"{where}: invalid regex {pattern!r}: {reason}") from None


def search(regex: re2._Regexp, text: str) -> re2._Match | None:
    """`regex.search(text)`, also for text with lone surrogates (which UTF-8 cannot encode:
    an upstream can send them as JSON escapes); each reads as "?" (one character for one, so
    match positions hold)."""
    try:
        return regex.search(text)
    except UnicodeEncodeError:
        return regex.search(text.encode("utf-8", "replace").decode("utf-8"))
