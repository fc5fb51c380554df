"""Labels → examples: the routing features of each labelled request, its scores per tier.

Features come from the router's own measurement (`routing.request.parse_chat` and
`routing.features.measure`), so a calibrated `conversation_tokens: {max: T}` means exactly
what the rules engine will measure on a live request. A label carrying `features` (exported
without its prompt) gives those numbers directly; keyword lists then cannot be learned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tier_router.calibrate.refusal import Refused
from tier_router.quality.labels import Label, LabelError, read_labels
from tier_router.routing.features import measure
from tier_router.routing.request import parse_chat

LENGTH_FIELDS = ("conversation_tokens", "last_user_tokens")
"""The range conditions a threshold may be calibrated on (both in `routing.conditions.RANGE_FIELDS`)."""

WORD_BYTES = bytes(c if chr(c) in "abcdefghijklmnopqrstuvwxyz0123456789_" else 32 for c in range(256))
"""Every byte that is not an ASCII word character (RE2's `\\b` delimits words so) to a space."""


def words_of(text: str) -> bytes:
    """A text as its lower-cased ASCII words, as RE2's `\\b` delimits them (a non-ASCII
    character is a delimiter), separated and surrounded by spaces: `has_word` is then one
    substring search. Which words may be keywords (3 to 31 characters, starting with a
    letter: `is_keyword`) is decided once per distinct word, not per text."""
    return b" " + text.lower().encode("ascii", "replace").translate(WORD_BYTES) + b" "


def has_word(words: bytes, word: bytes) -> bool:
    return b" " + word + b" " in words


def is_keyword(word: bytes) -> bool:
    return 3 <= len(word) <= 31 and 97 <= word[0] <= 122


@dataclass(slots=True)
class Examples:
    """Column-wise: one entry per usable label, in file order."""

    tiers: tuple[str, ...]
    """The tiers both the rules file and the labels name."""
    lengths: dict[str, list[int]] = field(default_factory=dict)
    """Feature name → its value per example (only features every example has)."""
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    """Tier → score per example, None when the label does not score that tier."""
    output_caps: list[int | None] = field(default_factory=list)
    """The request's max_tokens (or max_completion_tokens), for the output estimate."""
    words: list[bytes] | None = None
    """Per example, the last user message as `words_of` gives it; None when a label has no request."""

    def __len__(self) -> int:
        return len(self.output_caps)

    def subset(self, indices: list[int]) -> Examples:
        return Examples(
            self.tiers,
            {name: [values[i] for i in indices] for name, values in self.lengths.items()},
            {tier: [values[i] for i in indices] for tier, values in self.scores.items()},
            [self.output_caps[i] for i in indices],
            None if self.words is None else [self.words[i] for i in indices],
        )


def load_examples(path: Path, rule_tiers: tuple[str, ...]) -> Examples:
    """Read every label of `path`, keeping the scores of the tiers the rules file names."""
    seen: set[str] = set()
    lengths: dict[str, list[int | None]] = {name: [] for name in LENGTH_FIELDS}
    scores: dict[str, list[float | None]] = {tier: [] for tier in rule_tiers}
    caps: list[int | None] = []
    words: list[bytes] | None = []
    try:
        for number, label in enumerate(read_labels(path), 1):
            seen.update(label.scores)
            measured = measure_label(label, path, number)
            for name in LENGTH_FIELDS:
                lengths[name].append(measured.get(name))
            for tier in rule_tiers:
                scores[tier].append(label.scores.get(tier))
            cap = measured.get("max_tokens")
            caps.append(cap if isinstance(cap, int) and not isinstance(cap, bool) else None)
            if words is not None and label.request is not None:
                words.append(words_of(str(measured.get("last_user_text", ""))))
            else:
                words = None
    except OSError as exc:
        raise Refused(f"{path}: cannot read: {exc.strerror or exc}") from None
    except LabelError as exc:
        raise Refused(str(exc)) from None
    tiers = tuple(tier for tier in rule_tiers if tier in seen)
    if not tiers:
        raise Refused(
            f"no tier scored in {path} is a tier of the rules file "
            f"(labels score: {', '.join(sorted(seen)) or 'nothing'}; rules tiers: {', '.join(rule_tiers)})"
        )
    complete = {name: values for name, values in lengths.items() if all(v is not None for v in values)}
    if not complete:
        raise Refused(f"{path}: no length feature ({', '.join(LENGTH_FIELDS)}) is known for every label")
    return Examples(
        tiers,
        {name: [int(v) for v in values if v is not None] for name, values in complete.items()},
        {tier: scores[tier] for tier in tiers},
        caps,
        words,
    )


def first_problem(exc: Exception) -> str:
    """pydantic's first error as `messages.0.role: <message>`; else the exception's first line."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    if isinstance(exc, UnicodeEncodeError):
        return "a lone surrogate in its text"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def measure_label(label: Label, path: Path, number: int) -> dict[str, object]:
    """The label's features: measured from its request, or as given."""
    if label.request is not None:
        try:
            # text_checked: a lone surrogate fails in measure (UnicodeEncodeError, a ValueError)
            features = measure(parse_chat({"model": "auto", **label.request}, text_checked=True), {})
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            raise LabelError(
                f"{path}:{number}: request is not a valid chat-completions body ({first_problem(exc)})"
            ) from None
        measured: dict[str, object] = features.as_dict()
        measured["last_user_text"] = features.last_user_text
        return measured
    given = label.features or {}
    checked: dict[str, object] = {}
    for name in (*LENGTH_FIELDS, "max_tokens"):
        value = given.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LabelError(f"{path}:{number}: features.{name}: expected a whole number >= 0")
        checked[name] = value
    return checked
