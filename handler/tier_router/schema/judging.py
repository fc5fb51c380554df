"""The `quality:` section of the rules file: sampled judging and feedback (off by default).

    quality:
      sample: 0.02              # share of eligible answers judged (0: off; at most 1)
      reference: premium        # the tier a sampled request is sent to again, for comparison
      judge:
        model: gpt-4.1          # a model of this file; asked twice (both orders)
        rubric: default         # "default" (the shipped rubric) or your rubric's text
        max_tokens: 400         # the judge's answer, per order
      budget_usd: 2             # the judging's own daily budget (reference + judge calls)
      keep_prompts: false       # keep sampled requests (for label export) in the state store
      retention_days: 30        #   ... for this long
      feedback: {enabled: false, window_days: 7}   # POST /v1/feedback (one store write per request)
    rules:
      - {name: x, tier: budget, when: {...}, quality: {sample: 0.1}}   # per rule (0: never)

Shapes only; `routing.loader` checks the reference tier and the judge model exist.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from tier_router.schema.common import Name, Strict, Usd
from tier_router.schema.forms import QualitySpecView

MAX_RUBRIC_CHARS = 8_000
MAX_RETENTION_DAYS = 400
MAX_FEEDBACK_DAYS = 90


class JudgeSpec(Strict):
    model: Name = Field(description="the judge: a model of this file")
    rubric: str = Field(
        default="default",
        min_length=1,
        max_length=MAX_RUBRIC_CHARS,
        description='"default" (the shipped rubric, tier_router.quality.rubric) or the rubric text',
    )
    max_tokens: int = Field(default=400, ge=16, le=8192, description="the judge's answer, per order")


class FeedbackSpec(Strict):
    enabled: bool = Field(
        default=False, description="accept POST /v1/feedback: costs one small store write per answer"
    )
    window_days: int = Field(
        default=7, ge=1, le=MAX_FEEDBACK_DAYS, description="how long after a request feedback is taken"
    )


class QualitySpec(QualitySpecView, Strict):
    sample: float = Field(default=0.0, ge=0, le=1, description="share of eligible answers judged")
    reference: Name | None = Field(default=None, description="the tier sampled answers are compared with")
    judge: JudgeSpec | None = None
    budget_usd: Usd = Field(default=1.0, description="the judging's own daily budget")
    keep_prompts: bool = Field(
        default=False, description="keep sampled requests in the state store (for `tier-router labels`)"
    )
    retention_days: int = Field(default=30, ge=1, le=MAX_RETENTION_DAYS)
    feedback: FeedbackSpec = FeedbackSpec()
    max_pending: int = Field(
        default=8, ge=1, le=1000, description="judgements in flight per process; more are skipped"
    )

    @model_validator(mode="after")
    def _judged_needs_a_judge(self) -> QualitySpec:
        if self.sample > 0 and (self.reference is None or self.judge is None):
            raise ValueError("sampling (sample > 0) needs `reference` (a tier) and `judge` ({model: ...})")
        return self


class RuleQuality(Strict):
    """A rule's own sampling: its rate, and optionally its own reference tier."""

    sample: float | None = Field(default=None, ge=0, le=1)
    reference: Name | None = None
