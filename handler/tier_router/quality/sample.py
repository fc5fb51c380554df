"""What a judgement is about: one answered request, its answer, and where it was routed.

A `Sample` crosses a process boundary on Lambda (the judge runs in an asynchronous invocation
of the same function), so `from_event` checks every field it reads: an event is data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

PROMPT_PREFIX = "prompt:"


def prompt_key(request_id: str) -> str:
    """The store item keeping a sampled request's body (`quality.keep_prompts`): written by
    the judging, read by the labels export."""
    return f"{PROMPT_PREFIX}{request_id}"


class Verdict(StrEnum):
    """The served (cheaper) answer against the reference tier's, both orders combined."""

    WIN = "win"
    TIE = "tie"
    LOSS = "loss"


@dataclass(slots=True)
class Sample:
    """A request picked for judging, once its client has the answer."""

    request_id: str
    body: dict[str, Any]
    """The chat-completions request as the client sent it."""
    answer: str
    """The served answer: the first choice's text (tool calls as their JSON)."""
    tier: str
    """The tier that answered (the one judged)."""
    reference: str
    """The tier it is compared with."""
    rule: str | None = None
    model: str | None = None
    arm: str | None = None
    """"<experiment>/<arm>", as the results count it."""
    key: str | None = None
    cost: int | None = None
    """The served answer's cost, micro-dollars (None: unpriced)."""
    features: dict[str, Any] = field(default_factory=dict)

    def dims(self) -> dict[str, str]:
        """The dimension values a judgement counts on (see `counts`)."""
        values = {"tier": self.tier, "rule": self.rule, "model": self.model, "arm": self.arm}
        return {dim: name for dim, name in values.items() if name}

    def as_event(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_event(cls, data: object) -> Sample:
        """The inverse of `as_event`; ValueError naming the field for anything else."""
        if not isinstance(data, dict):
            raise ValueError("a sample is a JSON object")

        def text(name: str, optional: bool = False) -> Any:
            value = data.get(name)
            if value is None and optional:
                return None
            if not isinstance(value, str) or (not optional and not value):
                raise ValueError(f"sample.{name}: expected a string")
            return value

        body, features, cost = data.get("body"), data.get("features", {}), data.get("cost")
        if not isinstance(body, dict):
            raise ValueError("sample.body: expected the request object")
        if not isinstance(features, dict):
            raise ValueError("sample.features: expected an object")
        if cost is not None and (type(cost) is not int or cost < 0):
            raise ValueError("sample.cost: expected whole micro-dollars")
        if not isinstance(data.get("answer"), str):
            raise ValueError("sample.answer: expected a string")
        return cls(
            request_id=text("request_id"),
            body=body,
            answer=data["answer"],
            tier=text("tier"),
            reference=text("reference"),
            rule=text("rule", True),
            model=text("model", True),
            arm=text("arm", True),
            key=text("key", True),
            cost=cost,
            features=features,
        )
