"""Quality loop, part 2: measure answers on live traffic, and turn labels into rules.

    sample      Sample (a request picked for judging, with the answer its client got), Verdict
    counts      the `quality:<day>` store item: verdicts and feedback per tier/rule/model/arm
    sampling    which answered requests are judged (rate per rule, eligibility)
    rubric      the shipped judging rubric
    judge       the pairwise judge: prompts in both orders, parsing, combining the verdicts
    runner      one judgement: the reference tier's answer, the judge twice, its own budget,
                counted and logged; in a background task locally, an async invocation on Lambda
    facts       per-request facts kept for feedback (`fact:<request_id>`, opt-in)
    feedback    POST /v1/feedback
    report      the quality report (status, `tier-router quality`): win/tie/loss with a
                confidence interval, feedback, the cost saved against the reference
    labels      judged samples and feedback as labels (JSONL) for `tier-router calibrate`

The client's request never waits on any of it: a sample is judged after its response went
out, on its own budget, and a failing judge is logged and counted, nothing else.
"""
