"""Labels: one JSON object per line, what `tier-router calibrate` reads and `labels` exports.

    {"request": <a chat-completions body>, "scores": {"<tier>": <0..1>, ...}}

`scores` holds, per tier name, how acceptable that tier's answer to the request was
(1 = fully acceptable, 0 = not at all); a line may score any subset of the tiers. Any source
will do: exported judged samples and feedback, or a team's own evaluation set.

A line exported without the prompt (the router keeps prompts only with
`quality.keep_prompts: true`) carries `"features"` (the routing features the request line
logs) in place of `"request"`; calibration then uses the features alone (length thresholds,
no keyword lists).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tier_router.errors import ConfigError

MAX_LINE_BYTES = 4 << 20


class LabelError(ConfigError):
    """A line that is not a label: names the file, the line number and the reason."""


@dataclass(frozen=True, slots=True)
class Label:
    scores: dict[str, float]
    request: dict[str, Any] | None = None
    features: dict[str, Any] | None = None

    def as_json(self) -> str:
        data: dict[str, Any] = {}
        if self.request is not None:
            data["request"] = self.request
        else:
            data["features"] = self.features or {}
        data["scores"] = self.scores
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def check_score(name: str, value: object) -> float:
    """A score: a finite number from 0 to 1 (not a bool); LabelError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LabelError(f"{name}: expected a number from 0 to 1")
    if not 0 <= value <= 1:
        raise LabelError(f"{name}: {value} is outside 0..1")
    return float(value)


def parse_label(data: object) -> Label:
    """One decoded line; LabelError (without the place: `read_labels` adds it) otherwise."""
    if not isinstance(data, dict):
        raise LabelError("expected a JSON object")
    request, features, scores = data.get("request"), data.get("features"), data.get("scores")
    if request is None and features is None:
        raise LabelError('needs "request" (a chat-completions body) or "features"')
    is_body = isinstance(request, dict) and isinstance(request.get("messages"), list)
    if request is not None and not is_body:
        raise LabelError('"request" must be a chat-completions body with "messages"')
    if features is not None and not isinstance(features, dict):
        raise LabelError('"features" must be an object')
    if not isinstance(scores, dict) or not scores:
        raise LabelError('"scores" must be an object of tier -> score (0..1)')
    checked = {tier: check_score(f"scores.{tier}", score) for tier, score in scores.items()}
    return Label(checked, request, features if request is None else None)


def read_labels(path: Path) -> Iterator[Label]:
    """Every label of a JSONL file (blank lines skipped); LabelError naming file and line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE_BYTES:
                raise LabelError(f"{path}:{number}: line longer than {MAX_LINE_BYTES} bytes")
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise LabelError(f"{path}:{number}: not JSON ({exc.msg})") from None
            except UnicodeDecodeError:
                raise LabelError(f"{path}:{number}: not JSON (not UTF-8 text)") from None
            except RecursionError:
                raise LabelError(f"{path}:{number}: not JSON (nested too deeply)") from None
            try:
                yield parse_label(data)
            except LabelError as exc:
                raise LabelError(f"{path}:{number}: {exc}") from None
