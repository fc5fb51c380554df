"""Golden examples: requests with the tier and rule each must get.

Rules are code, so they get tests: `tier-router check` runs every example against the
rules file and prints one line per example (stable order, diff-friendly), failing on any
mismatch — a rules change in a pull request shows exactly which requests it moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tier_router.embedding_params import embedding_decision, is_embeddings, parse_embedding
from tier_router.errors import APIError
from tier_router.routing.engine import Decision, Rules, UnknownModelError, WrongKindError
from tier_router.routing.loader import Problem, RulesError, pydantic_problem, read_yaml
from tier_router.routing.request import Chat, parse_chat
from tier_router.schema import Priority


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: str | None = None
    rule: str | None = None
    priority: Priority | None = None
    model: str | None = Field(default=None, description="the first model of the chain")
    arm: str | None = Field(
        default=None,
        description='the exposure: "<experiment>/<arm>", "rollout:<rule>/in" or "none" (give the'
        " example a sticky id: a header, a user or a key, or it is placed at random)",
    )


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    prompt: str | None = None
    system: str | None = None
    request: dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    key: str | None = Field(default=None, description="the router key's name (a sticky source)")
    expect: Expect

    @model_validator(mode="after")
    def _one_input(self) -> Example:
        if (self.prompt is None) == (self.request is None):
            raise ValueError("give exactly one of prompt or request")
        return self

    def chat_request(self) -> Chat:
        if self.request is not None:
            return parse_chat({"model": "auto", **self.request})
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": self.prompt})
        return parse_chat({"model": "auto", "messages": messages})


class ExamplesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    examples: list[Example] = Field(min_length=1)


@dataclass(frozen=True)
class Outcome:
    example: Example
    decision: Decision | None
    mismatches: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def line(self) -> str:
        name = self.example.name
        if self.decision is None:
            return f"FAIL  {name}: {'; '.join(self.mismatches)}"
        got = f"{self.decision.tier}/{self.decision.label}"
        if self.ok:
            return f"ok    {name} -> {got}"
        return f"FAIL  {name}: {'; '.join(self.mismatches)} (why: {self.decision.why})"


def load_examples(path: Path) -> list[Example]:
    raw = read_yaml(path)
    try:
        return ExamplesFile.model_validate(raw).examples
    except ValidationError as exc:
        problems = [pydantic_problem(e, {"rules": []}, ExamplesFile) for e in exc.errors()]
        raise RulesError(path, problems, kind="examples file") from None


def run_example(rules: Rules, example: Example) -> Outcome:
    """An example's outcome; a `request` with `input` and no `messages` is an embeddings one."""
    headers = {k.lower(): v for k, v in example.headers.items()}
    try:
        if example.request is not None and is_embeddings(example.request):
            embedding = parse_embedding({"model": "auto", **example.request})
            decision = embedding_decision(rules, embedding, headers, key=example.key)
        else:
            decision = rules.decide(example.chat_request(), headers, key=example.key)
    except ValidationError as exc:
        return Outcome(example, None, (f"invalid request: {exc.errors()[0]['msg']}",))
    except APIError as exc:
        return Outcome(example, None, (f"invalid request: {exc}",))
    except (UnknownModelError, WrongKindError) as exc:
        return Outcome(example, None, (str(exc),))
    expect = example.expect
    got = {
        "tier": decision.tier,
        "rule": decision.label,
        "priority": decision.priority,
        "model": decision.candidates[0].name,
        "arm": f"{decision.experiment}/{decision.arm}" if decision.experiment else "none",
    }
    mismatches = tuple(
        f"{key} expected {want!r}, got {got[key]!r}"
        for key, want in expect.model_dump(exclude_none=True).items()
        if got[key] != want
    )
    return Outcome(example, decision, mismatches)


def default_examples_path(rules_path: Path) -> Path | None:
    """`<stem>.examples.yaml` beside the rules file; `examples.yaml` for `router.yaml`."""
    own = rules_path.with_name(f"{rules_path.stem}.examples.yaml")
    if own.exists():
        return own
    shared = rules_path.with_name("examples.yaml")
    if rules_path.stem == "router" and shared.exists():
        return shared
    return None


__all__ = ["Example", "Outcome", "Problem", "default_examples_path", "load_examples", "run_example"]
