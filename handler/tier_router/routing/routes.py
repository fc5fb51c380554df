"""A model as the forwarder needs it (`ModelRoute`), and fitting a chain to a request's size."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tier_router.routing.features import Features

if TYPE_CHECKING:
    from tier_router.schema import Price, Provider, Retry, Timeouts


def default_retry() -> Retry:
    from tier_router.schema import Retry  # a route built by hand (tests); a loaded one has its own

    return Retry()


def default_timeouts() -> Timeouts:
    from tier_router.schema import Timeouts

    return Timeouts()


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A model as the forwarder needs it: where to send it and what it costs."""

    name: str
    provider_name: str
    provider: Provider
    model_id: str
    price: Price
    context_window: int | None
    max_output: int | None
    retry: Retry = field(default_factory=default_retry)
    """Same-model retries: the provider's, with the model's override applied."""
    timeouts: Timeouts = field(default_factory=default_timeouts)
    """The provider's timeouts, with the model's override applied."""
    kind: str = "chat"
    """"chat" or "embedding" (priced by input tokens only)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "provider": self.provider_name,
            "provider_kind": self.provider.kind,
            "provider_model_id": self.model_id,
            "price_per_1m": self.price.model_dump(exclude_none=True),
            "context_window": self.context_window,
        }


Chain = tuple[ModelRoute, ...]


def needed_tokens(features: Features) -> int:
    """The context a request needs: its conversation (estimated) plus the output it asks for."""
    return features.conversation_tokens + (features.max_tokens or 0)


def fit_context(chain: Chain, features: Features) -> tuple[Chain, tuple[tuple[str, str], ...]]:
    """Drop models whose context window cannot hold the conversation plus the requested output.

    The token count is an estimate, so this only removes models that are clearly too small;
    if it would remove every model, the chain is kept whole and the providers decide.
    """
    needed = needed_tokens(features)
    if all(route.context_window is None or route.context_window >= needed for route in chain):
        return chain, ()
    kept = tuple(r for r in chain if r.context_window is None or r.context_window >= needed)
    if not kept:
        return chain, ()
    skipped = tuple(
        (r.name, f"context window {r.context_window} < ~{needed} tokens needed")
        for r in chain
        if r not in kept
    )
    return kept, skipped
