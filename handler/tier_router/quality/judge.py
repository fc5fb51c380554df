"""The pairwise judge, pure: its prompts in both orders, reading its answers, combining them.

    first, second = prompts(body, served, reference, rubric)   # served answer as A, then as B
    verdicts = [parse(text, "A"), parse(text, "B")]            # None: the judge's answer was unreadable
    judgement = combine(*verdicts)                             # win / tie / loss, scores 0..1

Both orders, because judge models prefer a position (usually the first): a preference that
flips with the order is a tie. The served answer wins when both orders prefer it, or one
does and the other calls it a tie; a loss is the mirror image; anything else is a tie.

What the judge is shown is bounded: the conversation to `CONVERSATION_CHARS` characters (its
start and its end, the cut said in the prompt), each answer to `ANSWER_BYTES` (counted as the
budget's reservation counts bytes, so `worst_prompt` bounds what a real prompt can bill).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tier_router.quality.rubric import rubric_text
from tier_router.quality.sample import Verdict

CONVERSATION_CHARS = 24_000
"""The conversation shown to the judge: its first quarter and last three quarters of this."""
ANSWER_BYTES = 16_000
"""Each answer shown to the judge, in UTF-8 bytes with JSON escapes (see `billed_bytes`)."""
CUT = "\n[... the rest of this answer was cut: it is longer than the judge is shown ...]"
SCORE_MAX = 10
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_BETTER = {"a": "A", "b": "B", "tie": "tie", "equal": "tie", "draw": "tie", "same": "tie", "both": "tie"}


# -- what the judge is shown -------------------------------------------------------------------


def billed_bytes(text: str) -> int:
    """What the budget's reservation bound (`spend.reservation`) counts for `text` in a prompt:
    its UTF-8 bytes, a quote or backslash as 2, a control character as 6."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    escaped = text.count('"') + text.count("\\")
    controls = len(_CONTROL.findall(text))
    return size + escaped + 5 * controls


def clip(text: str, limit: int = ANSWER_BYTES) -> str:
    """`text`, cut (and marked so) to at most `limit` billed bytes."""
    if billed_bytes(text) <= limit:
        return text
    room = limit - billed_bytes(CUT)
    cut = text[: max(room, 0)]
    while cut and billed_bytes(cut) > room:  # every character counts at least 1: this converges
        cut = cut[: len(cut) - max(1, (billed_bytes(cut) - room) // 6)]
    return cut + CUT


def part_text(content: Any) -> str:
    """A message's content as text: a string, or its text parts (other parts named)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    out = []
    for part in content:
        if isinstance(part, dict):
            kind = part.get("type")
            text = part.get("text")
            out.append(text if isinstance(text, str) else f"[{kind if isinstance(kind, str) else 'part'}]")
    return "\n".join(out)


def message_text(message: Any) -> str:
    """One message as the judge reads it: `[role] text`, tool calls as their JSON."""
    if not isinstance(message, dict):
        return ""
    role = message.get("role")
    text = part_text(message.get("content"))
    calls = message.get("tool_calls")
    if calls:
        text = f"{text}\n[tool calls] {json.dumps(calls, ensure_ascii=False)}".strip()
    return f"[{role if isinstance(role, str) else 'message'}] {text}"


def conversation(body: dict[str, Any], budget: int = CONVERSATION_CHARS) -> tuple[str, int]:
    """The request's messages as text, at most `budget` characters (its start and its end),
    and how many characters were left out."""
    messages = body.get("messages")
    text = "\n\n".join(message_text(m) for m in messages) if isinstance(messages, list) else ""
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        names = [t.get("function", {}).get("name") for t in tools if isinstance(t, dict)]
        text = f"[tools offered] {', '.join(str(n) for n in names)}\n\n{text}"
    if len(text) <= budget:
        return text, 0
    head = budget // 4
    omitted = len(text) - budget
    return f"{text[:head]}\n\n[... {omitted} characters omitted ...]\n\n{text[-(budget - head) :]}", omitted


def answer_text(completion: dict[str, Any]) -> str:
    """A non-streamed answer's first choice: its text, then its tool calls as their JSON."""
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return ""
    text = part_text(message.get("content"))
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        tools = json.dumps(calls, ensure_ascii=False)
        text = f"{text}\n{tools}" if text else tools
    return text


def prompt(shown: str, omitted: int, a: str, b: str, rubric: str) -> list[dict[str, str]]:
    """The judge's messages for one order."""
    note = (
        f"\n(The conversation was shortened for you: {omitted} characters in its middle are left out.)"
        if omitted
        else ""
    )
    user = (
        f"<conversation>\n{shown}\n</conversation>{note}\n\n"
        f"<answer_A>\n{a}\n</answer_A>\n\n<answer_B>\n{b}\n</answer_B>"
    )
    return [{"role": "system", "content": rubric_text(rubric)}, {"role": "user", "content": user}]


def prompts(
    body: dict[str, Any], served: str, reference: str, rubric: str = "default"
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Both orders' messages: the served answer as A (then the reference as B), and swapped."""
    shown, omitted = conversation(body)
    served, reference = clip(served), clip(reference)
    first = prompt(shown, omitted, served, reference, rubric)
    return first, prompt(shown, omitted, reference, served, rubric)


def worst_prompt(body: dict[str, Any], served: str, rubric: str = "default") -> list[dict[str, str]]:
    """An order's messages with the longest reference answer `clip` lets through: what the
    budget reserves for each judge call before the reference has answered."""
    return prompts(body, served, "x" * ANSWER_BYTES, rubric)[0]


def judge_body(model: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}


# -- what the judge said -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderVerdict:
    """One order's reading: where the served answer was shown, which answer the judge
    preferred, and its 0-10 scores of A and B."""

    served_as: str
    better: str
    a: float
    b: float

    @property
    def served_score(self) -> float:
        return self.a if self.served_as == "A" else self.b

    @property
    def reference_score(self) -> float:
        return self.b if self.served_as == "A" else self.a

    @property
    def preference(self) -> str:
        """ "served", "reference" or "tie"."""
        if self.better == "tie":
            return "tie"
        return "served" if self.better == self.served_as else "reference"

    def as_dict(self) -> dict[str, Any]:
        return {"served_as": self.served_as, "better": self.better, "a": self.a, "b": self.b}


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    score: float
    """The served answer's acceptability, 0..1 (both orders' scores averaged, / 10)."""
    reference_score: float


def _score(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= SCORE_MAX:  # NaN fails too
        return None
    return float(value)


def _reading(data: Any, served_as: str) -> OrderVerdict | None:
    if not isinstance(data, dict):
        return None
    fields = {str(k).lower(): v for k, v in data.items()}
    a, b = _score(fields.get("a")), _score(fields.get("b"))
    if a is None or b is None:
        return None
    said = fields.get("better")
    better = _BETTER.get(said.strip().lower()) if isinstance(said, str) else None
    if better is None:  # no usable preference: the scores say it
        better = "A" if a > b else "B" if b > a else "tie"
    return OrderVerdict(served_as, better, a, b)


def parse(text: str, served_as: str) -> OrderVerdict | None:
    """The judge's answer for the order where the served answer was `served_as` ("A"/"B"):
    the first JSON object with scores `a` and `b` (0-10) in it — in a code fence or among
    other text. None when there is none (a failed judgement)."""
    if not isinstance(text, str):
        return None
    decoder = json.JSONDecoder()
    for candidate in (*_FENCE.findall(text), text):
        start = candidate.find("{")
        while start != -1:
            try:
                data, _ = decoder.raw_decode(candidate, start)
            except ValueError:
                data = None
            reading = _reading(data, served_as)
            if reading is not None:
                return reading
            start = candidate.find("{", start + 1)
    return None


def combine(first: OrderVerdict, second: OrderVerdict) -> Judgement:
    """Both orders as one verdict of the served answer against the reference (see the module)."""
    preferences = (first.preference, second.preference)
    if "served" in preferences and "reference" not in preferences:
        verdict = Verdict.WIN
    elif "reference" in preferences and "served" not in preferences:
        verdict = Verdict.LOSS
    else:
        verdict = Verdict.TIE
    score = (first.served_score + second.served_score) / (2 * SCORE_MAX)
    reference = (first.reference_score + second.reference_score) / (2 * SCORE_MAX)
    return Judgement(verdict, round(score, 4), round(reference, 4))
