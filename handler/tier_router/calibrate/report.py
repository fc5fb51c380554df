"""What calibrate says: the rules it writes (with their comments), as text or as one JSON object."""

from __future__ import annotations

from typing import Any

from tier_router.calibrate.costs import OUTPUT_TOKENS
from tier_router.calibrate.evaluate import Figures, Interval
from tier_router.calibrate.run import Calibration
from tier_router.calibrate.writer import PREFIX, NewRule


def new_rules(cal: Calibration, today: str) -> list[NewRule]:
    """The calibrated rules, in order: keywords to the best tier, then one length rule per tier."""
    policy, held = cal.found.policy, cal.held_out
    data = (
        f"{today}, {cal.labels} labels: held-out quality {held.relative.value:.1%} of {policy.best} "
        f"(target {cal.target:.1%}), cost {held.cost_ratio.value:.0%} of {policy.best}'s"
    )
    rules: list[NewRule] = []
    if policy.keywords:
        words = policy.keywords[0] if len(policy.keywords) == 1 else "(?:" + "|".join(policy.keywords) + ")"
        pattern = rf"\b{words}\b"
        rules.append(
            NewRule(
                f"{PREFIX}keywords",
                policy.best,
                {"last_user_matches": {"pattern": pattern, "ignore_case": True}},
                data,
            )
        )
    for tier, limit in policy.steps:
        share = held.shares.get(tier, 0.0)
        rules.append(
            NewRule(
                f"{PREFIX}{tier}",
                tier,
                {policy.feature: {"max": limit}},
                f"{data}; {share:.0%} of held-out traffic",
            )
        )
    return rules


def as_json(cal: Calibration, rules: list[NewRule], written: str | None, default_tier: str) -> dict[str, Any]:
    policy = cal.found.policy
    return {
        "labels": cal.labels,
        "target": cal.target,
        "best_tier": policy.best,
        "tiers": cal.tiers,
        "cost_per_request_usd": cal.costs_per_request,
        "output_tokens_estimate": OUTPUT_TOKENS,
        "left_out": cal.left_out,
        "policy": {
            "feature": policy.feature,
            "thresholds": [{"tier": tier, "max": limit} for tier, limit in policy.steps],
            "keywords": list(policy.keywords),
        },
        "rules": [{"name": r.name, "tier": r.tier, "when": r.when, "comment": r.comment} for r in rules],
        "train": cal.train.as_dict(),
        "held_out": cal.held_out.as_dict(),
        "default_tier": default_tier,
        "written": written,
    }


def flow(value: Any) -> str:
    """A condition value as the written file shows it, e.g. `{max: 512}`."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {flow(inner)}" for key, inner in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def percent(interval: Interval) -> str:
    return f"{interval.value:.1%} ({interval.low:.1%}..{interval.high:.1%})"


def figures_text(figures: Figures, best: str) -> list[str]:
    shares = ", ".join(f"{tier} {share:.1%}" for tier, share in figures.shares.items())
    return [
        f"  quality: {percent(figures.relative)} of {best}'s; absolute {figures.quality.value:.3f} "
        f"({figures.quality.low:.3f}..{figures.quality.high:.3f}) vs {figures.best_quality:.3f}",
        f"  traffic: {shares}",
        f"  cost per request: ${figures.cost_per_request:.6f} vs ${figures.best_cost_per_request:.6f} "
        f"always {best}: {percent(figures.cost_ratio)}",
    ]


def render_text(cal: Calibration, rules: list[NewRule], written: str | None, default_tier: str) -> str:
    policy = cal.found.policy
    costs = ", ".join(f"{tier} ${cost:.6f}" for tier, cost in cal.costs_per_request.items())
    lines = [
        f"calibrate: {cal.labels} labels, {cal.train.examples} to train, {cal.held_out.examples} held out; "
        f"target {cal.target:.1%} of {policy.best}'s quality (the best tier on the training labels)",
        f"tiers, cheapest first (expected cost per request: first model's price, the prompt's tokens"
        f" + {OUTPUT_TOKENS} output tokens): {costs}",
    ]
    lines += [f"  {tier} left out: {why}" for tier, why in cal.left_out.items()]
    lines.append(f"rules (first in rules:, the rest of the file after them; feature {policy.feature}):")
    for rule in rules:
        condition = ", ".join(f"{key}: {flow(value)}" for key, value in rule.when.items())
        lines.append(f"  {rule.name}: {condition} -> {rule.tier}")
    lines.append(f"  anything else -> the file's other rules, then default_tier ({default_tier})")
    if default_tier != policy.best:
        lines.append(
            f"  note: the figures assume {policy.best} for anything else; requests no other rule "
            f"matches get {default_tier} instead"
        )
    lines.append(f"held out ({cal.held_out.examples} labels, never trained on; 95% intervals):")
    lines += figures_text(cal.held_out, policy.best)
    lines.append(f"training ({cal.train.examples} labels):")
    lines += figures_text(cal.train, policy.best)
    if cal.held_out.unscored:
        lines.append(f"  {cal.held_out.unscored} held-out picks had no score for their tier: counted as 0")
    lines.append(f"wrote {written}" if written else "not written: give --out FILE to write the rules file")
    return "\n".join(lines)
