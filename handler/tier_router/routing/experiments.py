"""Experiments and rollouts: rules that apply to a sticky share of the requests they match.

    experiments:
      cheap-chat: {arms: {control: 50, cascade: 50}}    # percent of sticky ids; the rest: in no arm
    rules:
      - {name: short-chat, tier: budget, arm: cheap-chat/cascade, rollout: 10%, when: {...}}

A rule's `Gate` is checked only after its condition held: `arm:` admits requests in that arm
of the experiment, `rollout:` that sticky share of them. A request a gate turns away goes on
to the next rules. Exposure is recorded at the decision point, first exposure wins:

- an `arm:` rule whose condition held records the experiment and the request's arm (whatever
  arm it is in: the control arm is exposed too; a request in no arm records nothing);
- a `rollout:` rule whose condition held records experiment "rollout:<rule>" and arm "in"
  or "out".

Requests no gated rule's condition matched are never exposed. Buckets come from
`routing.sticky` (see `sticky`): one hash per gate reached, bounds precomputed at load.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from tier_router.routing.problem import unknown
from tier_router.routing.sticky import Salt
from tier_router.schema.units import percent_to_buckets

if TYPE_CHECKING:
    from tier_router.schema import Experiment, Rule


class Exposure(NamedTuple):  # built per gated request: a NamedTuple is the cheapest typed record
    experiment: str
    """The experiment's name, or "rollout:<rule>"."""
    arm: str
    """The request's arm, or "in" / "out" for a rollout."""


@dataclass(frozen=True, slots=True, eq=False)
class Arms:
    """A compiled experiment: bucket bounds → arm."""

    name: str
    salt: Salt
    bounds: tuple[int, ...]
    arms: tuple[str, ...]

    def arm_of(self, digest: bytes) -> str | None:
        i = bisect_right(self.bounds, self.salt.bucket(digest))
        return self.arms[i] if i < len(self.arms) else None


def build_arms(name: str, experiment: Experiment) -> Arms:
    bounds: list[int] = []
    running = 0
    for share in experiment.buckets().values():
        running += share
        bounds.append(running)
    return Arms(name, Salt("experiment", name), tuple(bounds), tuple(experiment.arms))


@dataclass(frozen=True, slots=True, eq=False)
class Gate:
    """A rule's `arm:` and `rollout:`, checked after its condition held."""

    experiment: Arms | None = None
    arm: str | None = None
    rollout: Salt | None = None
    rollout_buckets: int = 0
    rollout_name: str = ""

    def admit(self, digest: bytes) -> tuple[bool, Exposure | None]:
        """Whether the rule applies to this sticky digest, and what exposure that records."""
        seen: Exposure | None = None
        if self.experiment is not None:
            arm = self.experiment.arm_of(digest)
            if arm is not None:
                seen = Exposure(self.experiment.name, arm)
            if arm != self.arm:
                return False, seen
        if self.rollout is not None:
            inside = self.rollout.bucket(digest) < self.rollout_buckets
            return inside, seen or Exposure(self.rollout_name, "in" if inside else "out")
        return True, seen

    text: str = ""
    """For `why`: "arm cheap-chat/treat, rollout 10%" (built at load)."""


def build_gate(rule: Rule, arms: Mapping[str, Arms]) -> Gate | None:
    """The rule's gate (None without `arm:` or `rollout:`); references checked by `gate_problems`."""
    if rule.arm is None and rule.rollout is None:
        return None
    experiment, arm = resolve_arm(rule.arm, arms) if rule.arm is not None else (None, None)
    rollout = Salt("rollout", rule.name) if rule.rollout is not None else None
    buckets = percent_to_buckets(rule.rollout) if rule.rollout is not None else 0
    parts = [f"arm {rule.arm}"] if rule.arm is not None else []
    parts += [f"rollout {rule.rollout:g}%"] if rule.rollout is not None else []
    return Gate(
        arms[experiment] if experiment is not None else None,
        arm,
        rollout,
        buckets,
        f"rollout:{rule.name}",
        ", ".join(parts),
    )


def resolve_arm(text: str, experiments: Mapping[str, object]) -> tuple[str | None, str]:
    """ "exp/arm" → (experiment, arm); names may hold "/": the split naming a known experiment
    wins, else the last "/" (for the error message)."""
    for i, char in enumerate(text):
        if char == "/" and text[:i] in experiments:
            return text[:i], text[i + 1 :]
    experiment, _, arm = text.rpartition("/")
    return (experiment if experiment in experiments else None), arm


def gate_problems(rules: list[Rule], experiments: Mapping[str, Experiment]) -> Iterator[tuple[str, str]]:
    """(where, reason) for each unknown experiment or arm, and each experiment no rule uses
    (an error: it would record no exposure and report nothing)."""
    used: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.arm is None:
            continue
        where = f"rule {rule.name!r} (#{i + 1}): arm"
        experiment, arm = resolve_arm(rule.arm, experiments)
        if experiment is None:
            name = rule.arm.rpartition("/")[0]
            if experiments:
                yield where, unknown("experiment", name, experiments)
            else:
                yield where, f"unknown experiment {name!r} (none declared under experiments:)"
            continue
        used.add(experiment)
        if arm not in experiments[experiment].arms:
            known = ", ".join(experiments[experiment].arms)
            yield where, f"unknown arm {arm!r} of experiment {experiment!r} (known: {known})"
    for name in experiments:
        if name not in used:
            yield (
                f"experiment {name!r}",
                f"no rule uses it: gate a rule with `arm: {name}/<arm>`, or remove the experiment",
            )
