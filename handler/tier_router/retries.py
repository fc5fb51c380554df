"""Same-model retries and context-window fallback: what the candidate loop does between two
attempts, beyond `fallback.verdict`.

Same-model retries (`schema.Retry`, per provider with a per-model override; `routing.
max_attempts` per request). After a refusal that may pass in a moment, the same model is asked
again before the next candidate — the user keeps the model they were routed to:
- a 429 whose `retry-after` (or `retry-after-ms`; seconds or an HTTP date) is at most
  `max_wait_s` (default 2 s): retried after that wait. A 429 without `retry-after`, or with a
  longer one, moves on at once (the wait would be longer than trying elsewhere);
- a model's first 500, 502 or 503: retried after a jittered `backoff_s` (uniformly 0.5x to
  1.5x; default 0.2 s, so 100-300 ms) — or its `retry-after` when longer and at most
  `max_wait_s`; a longer one moves on at once;
- nothing else: timeouts and silent upstreams (the wait was already spent), connect errors
  and dropped connections (the endpoint is down), invalid answers, other statuses.
At most `max_attempts` attempts per model (default 2: one retry), and no retry once the
request has made `routing.max_attempts` attempts (default 4) — each candidate in the chain
still gets its first attempt. A model whose breaker was not closed (the attempt was a probe,
or the plan's last resort) is not retried: a failed probe has just re-opened it.

What the breakers see: every attempt is reported as before — a retried 429 that fails again
counts twice against the model. The breakers count failed answers in a window, not failed
requests: a model that refuses every attempt opens its breaker sooner, which spares the
following requests the retry's wait; a single blip followed by a success counts once, as it
did before retries.

Streams: the loop runs before anything reaches the client (a stream is held back until its
first content), so a retry is never visible in the stream; after the first byte, nothing is
retried.

Context-window fallback (`ContextFloor`): after a `context_length_exceeded` refusal, the
candidates whose known `context_window` is at most the refusing model's are skipped, and no
refusing model is asked again.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from tier_router.fallback import Attempt, Outcome

if TYPE_CHECKING:
    from tier_router.routing.engine import ModelRoute

RETRY_5XX = frozenset({500, 502, 503})


def retry_delay(
    route: ModelRoute,
    attempts: list[Attempt],
    max_request_attempts: int,
    rng: random.Random,
) -> float | None:
    """Seconds to wait before asking `route` again after its last attempt (`attempts[-1]`),
    or None when the loop moves on. `attempts` is the request's list so far."""
    last = attempts[-1]
    status = last.outcome.status
    if status != 429 and status not in RETRY_5XX:
        return None  # the common case, a served answer or a failure never retried: no counting
    policy = route.retry
    on_model = 0
    tried = 0
    earlier_5xx = False
    for attempt in attempts:
        if attempt.tried:
            tried += 1
            if attempt.model == route.name:
                on_model += 1
                earlier_5xx |= attempt is not last and attempt.outcome.status in RETRY_5XX
    if on_model >= policy.max_attempts or tried >= max_request_attempts:
        return None
    wait = last.retry_after
    if status == 429:
        return wait if wait is not None and wait <= policy.max_wait_s else None
    if earlier_5xx:
        return None  # only a model's first 5xx is retried
    backoff = policy.backoff_s * rng.uniform(0.5, 1.5)
    if wait is None:
        return backoff
    return max(wait, backoff) if wait <= policy.max_wait_s else None


class ContextFloor:
    """Which candidates remain worth a try after `context_length_exceeded` refusals: none of
    the refusing models, and none whose known window is at most the largest refusing model's
    (an unknown window is tried: it may be larger)."""

    __slots__ = ("floor", "refused")

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.floor = 0

    def refuse(self, route: ModelRoute) -> None:
        self.refused.add(route.name)
        if route.context_window is not None:
            self.floor = max(self.floor, route.context_window)

    def fits(self, route: ModelRoute) -> bool:
        if route.name in self.refused:
            return False
        return route.context_window is None or route.context_window > self.floor


def skipped_too_small(route: ModelRoute, floor: ContextFloor) -> Attempt:
    window = "unknown" if route.context_window is None else str(route.context_window)
    detail = f"context window {window} is not larger than {floor.floor}, which refused the prompt as too long"
    if route.name in floor.refused:
        detail = "already refused the prompt as too long"
    return Attempt(route.name, route.provider_name, Outcome.WINDOW_TOO_SMALL, detail)
