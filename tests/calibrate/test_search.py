"""Calibration on synthetic labels whose right answer is known (`tests/calibrate/synthetic.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tier_router.calibrate.refusal import Refused
from tier_router.calibrate.run import MIN_TIER_LABELS, calibrate
from tier_router.routing.loader import load_rules

from tests.calibrate.synthetic import keyword_labels, length_labels, write_labels, write_rules

TARGET = 0.95


@pytest.fixture
def rules(tmp_path: Path):
    return load_rules(write_rules(tmp_path))


def right_threshold(threshold: int, noise: float, target: float, lengths: tuple[int, int]) -> float:
    """Where the budget tier's share ends on average: below `threshold` it is as good as
    premium; past it, each request sent to it loses (1 - 2 noise) of quality, and the target
    allows losing (1 - target) of premium's quality (1 - noise) over all requests."""
    low, high = lengths
    slack_share = (1 - target) * (1 - noise) / (1 - 2 * noise)
    return threshold + slack_share * (high - low)


@pytest.mark.parametrize(("features_only", "n", "within"), [(False, 4000, 0.02), (True, 20000, 0.01)])
def test_recovers_the_known_threshold_and_meets_the_target_held_out(
    tmp_path, rules, features_only, n, within
):
    """Measured from request bodies (4000 labels), and from exported features (20000)."""
    labels = write_labels(tmp_path / "labels.jsonl", length_labels(n, 500, features_only=features_only))

    cal = calibrate(labels, rules, TARGET, 0.3, 1)

    policy = cal.found.policy
    expected = right_threshold(500, 0.03, TARGET, (20, 2000))  # ~602
    assert policy.feature == "conversation_tokens"
    assert policy.keywords == ()
    [(tier, limit)] = policy.steps
    assert tier == "budget"
    assert abs(limit - expected) <= 40, (limit, expected)
    held = cal.held_out
    assert held.examples == round(0.3 * n)
    assert held.relative.value >= TARGET - within
    assert held.relative.low <= TARGET <= held.relative.high  # the interval holds the target
    assert 0.25 < held.shares["budget"] < 0.36
    assert held.cost_ratio.value < 0.8  # a quarter of the traffic at 1/30 of the price
    assert cal.train.relative.value >= TARGET - 1e-9


def test_a_higher_target_moves_the_threshold_down_to_where_budget_stops_being_good(tmp_path, rules):
    labels = write_labels(tmp_path / "labels.jsonl", length_labels(4000, 500, noise=0.0))

    cal = calibrate(labels, rules, 1.0, 0.3, 1)

    [(_, limit)] = cal.found.policy.steps
    assert 490 <= limit <= 500  # noiseless: exactly the largest training length at most 500
    assert cal.held_out.relative.value == 1.0


def test_a_keyword_that_makes_the_cheap_tier_fail_is_found(tmp_path, rules):
    labels = write_labels(tmp_path / "labels.jsonl", keyword_labels(4000, 1000, "prove", 0.15))
    plain = write_labels(tmp_path / "plain.jsonl", length_labels(4000, 1000, noise=0.02))

    cal = calibrate(labels, rules, TARGET, 0.3, 1)

    policy = cal.found.policy
    assert policy.keywords == ("prove",)
    [(_, limit)] = policy.steps
    assert abs(limit - right_threshold(1000, 0.02, TARGET, (20, 2000))) <= 60
    assert cal.held_out.relative.value >= TARGET - 0.015
    # the same lengths without the word: no keyword is learned from the filler words
    assert calibrate(plain, rules, TARGET, 0.3, 1).found.policy.keywords == ()


def test_without_the_keyword_the_threshold_would_be_much_lower(tmp_path, rules):
    """Keywords only when they pay: here the length rule alone must stop far below 1000."""
    labels = write_labels(tmp_path / "labels.jsonl", keyword_labels(4000, 1000, "prove", 0.15))
    features = tmp_path / "features.jsonl"
    # the same labels with features only: no keyword can be learned
    import json

    lines = [json.loads(line) for line in labels.read_text().splitlines()]
    for line in lines:
        text = line.pop("request")["messages"][0]["content"]
        line["features"] = {"conversation_tokens": (len(text) + 3) // 4 + 4}
    write_labels(features, lines)

    with_words = calibrate(labels, rules, TARGET, 0.3, 1)
    without = calibrate(features, rules, TARGET, 0.3, 1)

    assert without.found.policy.keywords == ()
    assert without.found.policy.steps[0][1] < with_words.found.policy.steps[0][1] - 200
    assert with_words.train.cost_ratio.value < without.train.cost_ratio.value


@pytest.mark.parametrize("target", [1.01, 0.0, -0.5, float("nan")])
def test_a_target_outside_0_to_1_is_refused(tmp_path, rules, target):
    labels = write_labels(tmp_path / "labels.jsonl", length_labels(400, 500))
    with pytest.raises(Refused, match="unreachable"):
        calibrate(labels, rules, target, 0.3, 1)


def test_a_target_no_cheaper_policy_meets_is_refused_naming_the_best_tier(tmp_path, rules):
    labels = length_labels(1000, 500, noise=0.0)
    for label in labels:
        label["scores"]["budget"] = 0.0  # the budget tier is never acceptable
    path = write_labels(tmp_path / "labels.jsonl", labels)
    # 99.9% of premium's quality over 700 training labels: not one request may go to budget
    with pytest.raises(Refused, match="use 'premium' for everything"):
        calibrate(path, rules, 0.999, 0.3, 1)
    # at 95%, the shortest 5% may: the refusal is about the target, not about the data
    assert calibrate(path, rules, TARGET, 0.3, 1).held_out.shares["budget"] < 0.07


def test_too_few_labels_are_refused_stating_the_minimum(tmp_path, rules):
    path = write_labels(tmp_path / "labels.jsonl", length_labels(60, 500))  # 42 to train
    with pytest.raises(Refused, match=f"at least {MIN_TIER_LABELS}"):
        calibrate(path, rules, TARGET, 0.3, 1)


def test_too_few_labels_for_the_cheap_tier_is_refused(tmp_path, rules):
    labels = length_labels(600, 500)
    for label in labels[40:]:
        del label["scores"]["budget"]
    path = write_labels(tmp_path / "labels.jsonl", labels)
    with pytest.raises(Refused, match="no tier cheaper than the best tier 'premium' has enough labels"):
        calibrate(path, rules, TARGET, 0.3, 1)


def test_labels_naming_no_tier_of_the_rules_file_are_refused(tmp_path, rules):
    labels = length_labels(400, 500)
    for label in labels:
        label["scores"] = {"gpt-small": label["scores"]["budget"], "gpt-large": label["scores"]["premium"]}
    path = write_labels(tmp_path / "labels.jsonl", labels)
    with pytest.raises(Refused, match=r"no tier scored in .* is a tier of the rules file"):
        calibrate(path, rules, TARGET, 0.3, 1)


def test_a_missing_score_for_the_picked_tier_counts_as_zero(tmp_path, rules):
    """Conservative: short requests whose budget answer was never scored are no evidence."""
    labels = length_labels(4000, 500, noise=0.0)
    for i, label in enumerate(labels):
        if i % 2:
            del label["scores"]["budget"]
    path = write_labels(tmp_path / "labels.jsonl", labels)

    cal = calibrate(path, rules, TARGET, 0.3, 1)

    # half the short requests score 0 on budget: only a small share of traffic may go there
    assert cal.held_out.unscored > 0
    assert cal.held_out.shares["budget"] < 0.15
    assert cal.found.policy.steps[0][1] < 400


def test_the_split_never_trains_on_held_out_labels(tmp_path, rules):
    path = write_labels(tmp_path / "labels.jsonl", length_labels(1000, 500))
    cal = calibrate(path, rules, TARGET, 0.3, 5)
    assert (cal.train.examples, cal.held_out.examples) == (700, 300)
    assert cal.labels == 1000


def test_a_held_out_part_that_misses_the_target_badly_is_refused(tmp_path, rules):
    """Labels whose held-out part (the same seeded split calibrate makes) disagrees with the
    training part: rules trained on one would break the target on the other."""
    import random

    n, seed = 2000, 3
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[: round(n * 0.3)])
    labels = length_labels(n, 500, noise=0.0)
    for i in held:
        labels[i]["scores"]["budget"] = 0.0
    path = write_labels(tmp_path / "labels.jsonl", labels)

    with pytest.raises(Refused, match="the held-out check failed"):
        calibrate(path, rules, TARGET, 0.3, seed)
    # another split mixes them: no refusal, and the figures say what the data say
    assert calibrate(path, rules, TARGET, 0.3, seed + 1).held_out.relative.high >= TARGET - 0.01


def test_three_tiers_get_one_threshold_per_boundary(tmp_path):
    """budget is good up to 300 tokens, standard up to 1200, premium always: at target 1 the
    thresholds are the two boundaries (to the grid's precision: 256 quantiles of the lengths)."""
    import json
    import random

    from tests.calibrate.synthetic import RULES_YAML

    three = RULES_YAML.replace(
        "  large:\n",
        "  mid:\n    provider: mock\n    id: mid-1\n    price: {input: 0.40, output: 1.60}\n  large:\n",
    ).replace("  budget: [small]\n", "  budget: [small]\n  standard: [mid]\n")
    rules = load_rules(write_rules(tmp_path, three))
    rng = random.Random(3)
    lines = []
    for _ in range(20000):
        tokens = rng.randint(20, 2000)
        scores = {"budget": float(tokens <= 300), "standard": float(tokens <= 1200), "premium": 1.0}
        lines.append(json.dumps({"features": {"conversation_tokens": tokens}, "scores": scores}))
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(lines) + "\n")

    cal = calibrate(path, rules, 1.0, 0.3, 1)

    (cheap, low), (middle, high) = cal.found.policy.steps
    assert (cheap, middle) == ("budget", "standard")
    assert 290 <= low <= 300
    assert 1185 <= high <= 1200
    assert cal.held_out.relative.value == 1.0
    assert cal.tiers == ("budget", "standard", "premium")
