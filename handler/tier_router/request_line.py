"""The access-log record: one line per request, its one definition.

`lifecycle` fills a `RequestLine` as the request goes and writes it exactly once; `replay`
reads the same fields back with `RequestLine.read`. Routing facts and numbers only — never
prompt or completion text, never keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
"""Where chat completions are served; their lines are the ones a replay prices."""
EMBEDDINGS_PATHS = ("/v1/embeddings", "/embeddings")
EMBEDDINGS = "embeddings"
"""The `endpoint` of an embeddings request's line (a chat line has none): replay, judging
and cascades leave such lines alone."""


class Outcome(StrEnum):
    """How a request ended, from the router's side."""

    OK = "ok"
    """Answered in full (a stream: its content was complete and the end marker sent)."""
    CACHE_HIT = "cache_hit"
    REFUSED = "refused"
    """Answered with an error before anything was forwarded (auth, body, model, limits)."""
    FAILED = "failed"
    """Every candidate failed or none could be tried."""
    CLIENT_ERROR = "client_error"
    """A provider rejected the request as the client's fault."""
    CLIENT_GONE = "client_gone"
    """The client left before its answer was complete."""
    STREAM_INTERRUPTED = "stream_interrupted"
    """The provider's stream failed after content had been sent."""
    ERROR = "error"
    """The router itself failed (logged with its traceback)."""
    CANCELLED = "cancelled"
    """The server cancelled the request (shutdown) while the client was still there."""


@dataclass(slots=True)
class RequestLine:
    """Everything one request line says. Filled in place as the request goes."""

    request_id: str
    method: str = "POST"
    path: str = ""
    endpoint: str | None = None
    """"embeddings" for POST /v1/embeddings; None (not written) for chat and the rest."""
    outcome: Outcome | None = None
    """None until the request's end is known (`app` decides it at the latest)."""
    status: int = 499
    error: str | None = None
    """The OpenAI error code of an error answer."""
    key: str | None = None
    tier: str | None = None
    rule: str | None = None
    priority: str | None = None
    model: str | None = None
    provider: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float = 0.0
    upstream_ms: float = 0.0
    cost_micro_usd: int | None = None
    cost_estimated: bool = False
    """The provider's usage never arrived (the client left mid-stream): the cost was priced
    from what had been streamed and the prompt's estimate."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    """Of `prompt_tokens`, those read from the provider's prompt cache; written when non-zero."""
    cache_savings_micro_usd: int | None = None
    """What those cached reads saved against the input price (rounded down); written when
    non-zero."""
    bad_chunks: int = 0
    """Stream chunks skipped because they were not JSON (`providers.base.MAX_BAD_CHUNKS`)."""
    recovered: str | None = None
    """A stream that failed mid-way and was finished by the next candidate: "prefill" (it
    continued the partial answer) or "regenerate" (it answered anew; the prefix was skipped)."""
    cache: str | None = None
    downgraded_from: str | None = None
    downgrade_reason: str | None = None
    features: dict[str, Any] | None = None
    experiment: str | None = None
    """The experiment (or `rollout:<rule>`) this request was exposed to, with its `arm`."""
    arm: str | None = None
    escalated_from: str | None = None
    """The tier whose answer failed validation and was escalated (the first, when several)."""
    escalations: list[dict[str, Any]] = field(default_factory=list)
    """Each answer that failed validation and was escalated, oldest first: {"tier", "model",
    "provider", "validator", "reason", "to", "cost_micro_usd", "prompt_tokens",
    "completion_tokens", "attempts"}. `cost_micro_usd` of the line includes theirs."""
    cascade: str | None = None
    """Set when the answer was validated: the tier a failed answer would have gone to (so a
    replay can tell "validated and passed" from "never validated")."""
    validation: str | None = None
    """The served answer's own validation failure ("validator: reason"), when it was served
    anyway (no cascade left to take, or every escalation candidate failed)."""
    conversation: dict[str, Any] | None = None
    """Sticky conversations (`routing.stickiness.Placement.as_dict`, plus "moved_by" when the
    answering model moved it): {"conversation": <label>, "stick", "move", "remembered", ...}."""
    prompt_cache: dict[str, Any] | None = None
    """What the router added to the answered request for the provider's prompt cache, when it
    added something (`providers.cache_hints.CacheWork`): {"marks": <cache_control breakpoints>,
    "key": <whether it set prompt_cache_key>}."""

    @property
    def arm_label(self) -> str | None:
        """ "<experiment>/<arm>" (the experiment "-" when unknown), as results, feedback and
        judgements count the arm; None outside an experiment."""
        return f"{self.experiment or '-'}/{self.arm}" if self.arm else None

    def record(self) -> dict[str, Any]:
        """The JSON object written to the log (unset optional facts left out)."""
        data: dict[str, Any] = {
            "event": "request",
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
        }
        if self.endpoint is not None:
            data["endpoint"] = self.endpoint
        data |= {
            "outcome": str(self.outcome or Outcome.CANCELLED),
            "status": self.status,
            "key": self.key,
            "latency_ms": self.latency_ms,
        }
        if self.error is not None:
            data["error"] = self.error
        if self.tier is not None or self.rule is not None:
            data.update(tier=self.tier, rule=self.rule, priority=self.priority)
        if self.attempts or self.model is not None:
            data.update(
                model=self.model,
                provider=self.provider,
                attempts=self.attempts,
                upstream_ms=self.upstream_ms,
                router_ms=round(self.latency_ms - self.upstream_ms, 2),
            )
        data["cost_micro_usd"] = self.cost_micro_usd  # null: nothing was admitted, nothing settled
        data["cost_estimated"] = self.cost_estimated
        if self.prompt_tokens is not None or self.completion_tokens is not None:
            data.update(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)
        if self.cached_tokens:
            data["cached_tokens"] = self.cached_tokens
        if self.cache_savings_micro_usd:
            data["cache_savings_micro_usd"] = self.cache_savings_micro_usd
        if self.bad_chunks:
            data["bad_chunks"] = self.bad_chunks
        if self.recovered is not None:
            data["recovered"] = self.recovered
        if self.cache is not None:
            data["cache"] = self.cache
        if self.downgraded_from is not None:
            data.update(downgraded_from=self.downgraded_from, downgrade_reason=self.downgrade_reason)
        if self.features is not None:
            data["features"] = self.features
        if self.arm is not None:
            data.update(experiment=self.experiment, arm=self.arm)
        if self.escalations:
            data.update(escalated_from=self.escalated_from, escalations=self.escalations)
        if self.cascade is not None:
            data["cascade"] = self.cascade
        if self.validation is not None:
            data["validation"] = self.validation
        if self.conversation is not None:
            data["conversation"] = self.conversation
        if self.prompt_cache is not None:
            data["prompt_cache"] = self.prompt_cache
        return data

    @classmethod
    def read(cls, obj: dict[str, Any]) -> RequestLine | None:
        """A line read back from a log (replay): None unless it is a request line. Values of
        the wrong type read as absent — a log is data, not trusted input."""
        if obj.get("event") != "request" or not isinstance(obj.get("request_id", ""), str):
            return None
        line = cls(str(obj.get("request_id", "")), status=200)
        for name, kind in _READ_TYPES.items():
            value = obj.get(name)
            if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
                setattr(line, name, value)
        try:
            line.outcome = Outcome(obj.get("outcome"))
        except ValueError:
            line.outcome = Outcome.ERROR
        return line


_READ_TYPES: dict[str, type | tuple[type, ...]] = {
    "method": str,
    "path": str,
    "endpoint": str,
    "status": int,
    "error": str,
    "key": str,
    "tier": str,
    "rule": str,
    "priority": str,
    "model": str,
    "provider": str,
    "attempts": list,
    "latency_ms": (int, float),
    "upstream_ms": (int, float),
    "cost_micro_usd": int,
    "cost_estimated": bool,
    "prompt_tokens": int,
    "completion_tokens": int,
    "cached_tokens": int,
    "cache_savings_micro_usd": int,
    "bad_chunks": int,
    "recovered": str,
    "cache": str,
    "downgraded_from": str,
    "downgrade_reason": str,
    "features": dict,
    "experiment": str,
    "arm": str,
    "escalated_from": str,
    "escalations": list,
    "cascade": str,
    "validation": str,
    "conversation": dict,
    "prompt_cache": dict,
}
