"""The OpenAI chat-completions request: the pydantic model that defines what is valid.

Unknown fields are kept (`extra="allow"`): the proxy forwards the client's body with only
`model` replaced, so a field this router has never heard of still reaches the provider.
Validation is deliberately loose where OpenAI itself is loose (content may be a string, a
list of parts, or null) and strict where routing depends on it (messages, roles).

The proxy validates with `routing.request.parse_chat` and comes here only for bodies its
direct checks do not accept plainly; this module is imported then, not at start-up (building
the model costs several ms of every Lambda cold start).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _encodable(value: str) -> str:
    """Reject lone surrogates (`"\\ud800"` is valid JSON but not text): no UTF-8 form exists."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text contains an unpaired surrogate (invalid Unicode)") from None
    return value


Text = Annotated[str, AfterValidator(_encodable)]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: Text | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[ContentPart] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1, fail_fast=True)  # report the first bad message only
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    modalities: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    functions: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    metadata: dict[str, Text] | None = None
    user: Text | None = None
