"""`refusal`: the model declined or gave a non-answer instead of answering.

Fails when `message.refusal` is set, when the answer is empty (no text, no tool calls), or when
one of the RE2 patterns matches within the first `within` characters (default 300) of the text
(the reason names the pattern's index).

The shipped patterns are English, case-insensitive, and anchored at the start of the answer
(after any leading punctuation, quotes or markdown), except "As an AI language model," (with
its comma), which counts at the start of any sentence in the window. They need an apology or
refusal *and* an inability verb ("I'm sorry, but I can't", "I cannot help with", "I'm unable
to assist", "Unfortunately, I cannot", "I must decline"), so ordinary openings pass: "Sorry
for the delay, here is...", "I'm sorry to hear that. Here's what to do", "I cannot stress
enough how...", "I can't help but notice...", "I'm unable to reproduce the bug, but here is
what I tried" all pass. A partial refusal that starts with an answer passes too; add
`extra_patterns` to be stricter.

Options: `patterns` (replace the shipped ones), `extra_patterns` (add to them), `within`
(characters of the answer's start searched, 1..100000). Patterns are RE2 (no backtracking),
compiled at load; an invalid one fails the rules file with RE2's reason.
"""

from __future__ import annotations

from typing import Any, Self

from tier_router.validators import options as opts
from tier_router.validators import regex
from tier_router.validators.base import Ask, Choice, Validator

_APOS = "['’]"
_I_AM = rf"I(?:{_APOS}m|\s+am)"
_CANNOT = (
    rf"(?:can(?:{_APOS}t|not|\s+not)|won{_APOS}t|will\s+not|(?:am\s+)?unable\s+to"
    rf"|(?:am\s+)?not\s+able\s+to|{_APOS}m\s+(?:unable|not\s+able)\s+to)"
)
_HELP = (  # "help" only as a refusal: not "I can't help but notice..."
    r"(?:help(?:\s+(?:you|with)\b|\s*[.!,;]|$)|(?:assist|provide|comply|fulfil|fulfill|answer|respond"
    r"|do\s+that|do\s+this|complete|support|engage|create|generate|share|give)\b)"
)
_START = r"^[\s\W]{0,8}"

DEFAULT_PATTERNS: tuple[str, ...] = (
    # "I'm sorry, but I can't ...", "I am sorry, I cannot ...", "Sorry, but I won't ..."
    rf"(?i){_START}(?:{_I_AM}\s+(?:very\s+|so\s+|really\s+)?sorry|sorry|I\s+apologi[sz]e),?\s+(?:but\s+)?(?:I|we)\s*{_CANNOT}",
    # "I cannot help with that", "I can't assist with", "I won't provide"
    rf"(?i){_START}(?:I|we)\s+{_CANNOT}\s+{_HELP}",
    # "I'm unable to help", "I am not able to provide"
    rf"(?i){_START}{_I_AM}\s+(?:unable|not\s+able)\s+to\s+{_HELP}",
    # "Unfortunately, I can't ..."
    rf"(?i){_START}unfortunately,?\s+(?:I|we)\s*{_CANNOT}",
    # "I must decline", "I have to respectfully decline"
    rf"(?i){_START}I\s+(?:must|have\s+to|need\s+to)\s+(?:respectfully\s+|politely\s+)?decline",
    # "As an AI language model, ..." opening the answer or a sentence in the window
    r"(?i)(?:^|[.!?:]\s)[\s\W]{0,8}as\s+(?:an?\s+(?:AI|artificial\s+intelligence)(?:\s+language)?"
    r"|a\s+large\s+language)\s+model,",
)
DEFAULT_WITHIN = 300
MAX_WITHIN = 100_000


class Refusal(Validator):
    kind = "refusal"

    def __init__(self, patterns: tuple[str, ...] = DEFAULT_PATTERNS, within: int = DEFAULT_WITHIN) -> None:
        super().__init__()
        self.patterns = patterns
        self.within = within
        self.each = tuple(  # one by one: a bad pattern is named
            regex.compile_pattern(pattern, where=f"patterns[{i}]") for i, pattern in enumerate(patterns)
        )
        self.regex = regex.compile_pattern("|".join(f"(?:{p})" for p in patterns)) if patterns else None

    @classmethod
    def configure(cls, options: Any) -> Self:
        given = opts.mapping(cls.kind, options, ("patterns", "extra_patterns", "within"))
        patterns = opts.strings(given["patterns"], "patterns") if "patterns" in given else DEFAULT_PATTERNS
        extra = opts.strings(given.get("extra_patterns", []), "extra_patterns")
        for i, pattern in enumerate(extra):
            regex.compile_pattern(pattern, where=f"extra_patterns[{i}]")
        patterns += extra
        within = opts.integer(given.get("within", DEFAULT_WITHIN), "within", minimum=1, maximum=MAX_WITHIN)
        return cls(patterns, within)

    def check(self, choice: Choice, ask: Ask) -> str | None:
        if choice.refusal is not None:
            return "the model refused (message.refusal)"
        if not choice.tool_calls and not choice.text.strip():
            return "empty answer"
        return self.matched(choice.text, complete=True)

    def early(self, text: str, ask: Ask) -> str | None:
        return self.matched(text, complete=False)

    def matched(self, text: str, complete: bool) -> str | None:
        if self.regex is None:
            return None
        window = text[: self.within]
        found = regex.search(self.regex, window)
        if found is None:
            return None
        if not complete and found.end() >= len(window) and len(text) <= self.within:
            return None  # the match touches the end of what has come: more text could undo it
        which = next((i for i, one in enumerate(self.each) if regex.search(one, window)), 0)
        return f"the answer reads as a refusal (pattern {which}, in its first {self.within} characters)"
