"""The mock as a judge, so the demo can run the whole quality loop with no API key.

A request whose last user message holds `<answer_A>…</answer_A>` and `<answer_B>…</answer_B>`
(the shape of `quality.judge`'s prompt) is answered with a verdict in the judge's JSON:
an answer marked `(shallow)` (a mock provider with `shallow_above_tokens`) scores 3, any
other 8; the better-scored answer wins, equal scores tie. Deterministic and blind to the
order the answers are shown in — which is what a judge should be.
"""

from __future__ import annotations

import json
import re

SHALLOW = "(shallow)"
SHALLOW_SCORE, GOOD_SCORE = 3, 8
_ANSWER = re.compile(r"<answer_([AB])>\n?(.*?)\n?</answer_\1>", re.S)


def verdict(prompt: str) -> str | None:
    """The judge's JSON answer to `prompt`, or None when it is not a judging prompt."""
    found = dict(_ANSWER.findall(prompt))
    if set(found) != {"A", "B"}:
        return None
    a, b = (SHALLOW_SCORE if SHALLOW in found[side] else GOOD_SCORE for side in "AB")
    better = "A" if a > b else "B" if b > a else "tie"
    reason = "equally acceptable" if better == "tie" else f"answer {'B' if better == 'A' else 'A'} is shallow"
    return json.dumps({"a": a, "b": b, "better": better, "reason": reason})
