"""What a request can name wrongly: a model the router does not serve, or one of the other kind."""

from __future__ import annotations

from tier_router.errors import RequestError


class UnknownModelError(RequestError, LookupError):
    """The request named a model that is neither `auto`, a tier, an alias nor a model."""

    def __init__(self, requested: str, valid: list[str], message: str | None = None) -> None:
        self.requested = requested
        self.valid = valid
        default = f"The model {requested!r} does not exist on this router. Use one of: {', '.join(valid)}."
        super().__init__(message or default)


class WrongKindError(RequestError, LookupError):
    """The request named an embedding tier or model on chat, or a chat one on embeddings."""

    def __init__(self, requested: str, endpoint: str, kind: str) -> None:
        self.requested = requested
        super().__init__(
            f"{requested!r} is {'an' if kind == 'embedding' else 'a'} {kind} model or tier: it cannot"
            f" serve {endpoint}. See GET /v1/models for the names this router serves."
        )
