"""The shipped judging rubric: what the judge model is told, and the JSON it must answer with.

`quality.judge.rubric: default` uses `DEFAULT_RUBRIC`; any other text replaces it (the
answer format, `ANSWER_FORMAT`, is always appended: the router parses it).
"""

from __future__ import annotations

DEFAULT_RUBRIC = """\
You are a strict, impartial judge of AI assistants' answers. You are shown a conversation and
two candidate answers to its last message, "A" and "B". Judge each answer on its own first:

- correct: facts, arithmetic, code and reasoning are right; nothing is made up;
- responsive: it does what the last message asks (format, language, length, constraints);
- complete: nothing the user needs is missing; no padding or needless refusal;
- safe and honest: it says when it does not know.

Score each answer's acceptability from 0 to 10: 10 = fully acceptable, as good as a careful
expert's; 7 = acceptable with minor flaws; 4 = flawed (an error a user would notice);
0 = wrong, harmful, or no answer. Then say which answer is better, or "tie" when they are
equally acceptable. The order in which the answers are shown says nothing about them; their
length is not a merit."""

ANSWER_FORMAT = """\
Answer with ONE JSON object and nothing else:
{"a": <0-10>, "b": <0-10>, "better": "A" | "B" | "tie", "reason": "<one short sentence>"}"""


def rubric_text(configured: str) -> str:
    """The judge's instructions for `quality.judge.rubric` ("default": the shipped rubric)."""
    rubric = DEFAULT_RUBRIC if configured == "default" else configured.strip()
    return f"{rubric}\n\n{ANSWER_FORMAT}"
