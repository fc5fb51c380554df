"""Synthetic labels whose right answer is known, and a small rules file to calibrate.

`RULES_YAML`: two tiers, `budget` (one cheap model) and `premium` (one dear model), a
comment on every section and one ordinary rule, `default_tier: premium`.

`length_labels`: the budget tier is acceptable (score 1) when the request's
`conversation_tokens` is at most `threshold`, not at all (0) above it; the premium tier
always is; each score flips with probability `noise`. Lengths are uniform over `lengths`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

RULES_YAML = """\
# A small rules file for calibrate's tests.
version: 1

providers:
  mock:
    kind: mock                  # answers locally
    base_url: mock://local

models:
  small:
    provider: mock
    id: small-1
    price: {input: 0.10, output: 0.40}   # cheap
  large:
    provider: mock
    id: large-1
    price: {input: 3.00, output: 15.00}  # dear

tiers:
  budget: [small]
  premium: [large]

default_tier: premium   # anything no rule matches

rules:
  # Tool calls need the strong model.
  - name: tools
    tier: premium
    when:
      has_tools: true
"""

FILLER = [f"w{i:02d}x" for i in range(60)]
"""Neutral words: never a reason for either tier to fail."""


def write_rules(directory: Path, text: str = RULES_YAML) -> Path:
    path = directory / "router.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def body_of_tokens(tokens: int, rng: random.Random, extra: str = "") -> dict[str, Any]:
    """A chat body whose one user message measures `tokens` conversation tokens (chars/4 + 4)."""
    chars = max(4 * (tokens - 4), 1)
    words = [extra] if extra else []
    size = len(extra) + 1 if extra else 0
    while size < chars:
        word = rng.choice(FILLER)
        words.append(word)
        size += len(word) + 1
    text = " ".join(words)[:chars]
    if extra and extra not in text:
        text = extra + text[len(extra) :]
    return {"messages": [{"role": "user", "content": text}]}


def flip(score: float, noise: float, rng: random.Random) -> float:
    return 1.0 - score if rng.random() < noise else score


def length_labels(
    n: int,
    threshold: int,
    *,
    noise: float = 0.03,
    lengths: tuple[int, int] = (20, 2000),
    seed: int = 7,
    features_only: bool = False,
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    labels = []
    for _ in range(n):
        tokens = rng.randint(*lengths)
        scores = {
            "budget": flip(1.0 if tokens <= threshold else 0.0, noise, rng),
            "premium": flip(1.0, noise, rng),
        }
        if features_only:
            labels.append(
                {
                    "features": {"conversation_tokens": tokens, "last_user_tokens": tokens - 4},
                    "scores": scores,
                }
            )
        else:
            labels.append({"request": body_of_tokens(tokens, rng), "scores": scores})
    return labels


def keyword_labels(
    n: int,
    threshold: int,
    word: str,
    share: float,
    *,
    seed: int = 11,
    lengths: tuple[int, int] = (20, 2000),
) -> list[dict[str, Any]]:
    """As `length_labels` (noise 0.02), but a share of the requests mention `word`, and the
    budget tier fails those whatever their length."""
    rng = random.Random(seed)
    labels = []
    for _ in range(n):
        tokens = rng.randint(*lengths)
        has_word = rng.random() < share
        budget = 0.0 if has_word or tokens > threshold else 1.0
        scores = {"budget": flip(budget, 0.02, rng), "premium": flip(1.0, 0.02, rng)}
        labels.append({"request": body_of_tokens(tokens, rng, word if has_word else ""), "scores": scores})
    return labels


def write_labels(path: Path, labels: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(label) + "\n" for label in labels), encoding="utf-8")
    return path
