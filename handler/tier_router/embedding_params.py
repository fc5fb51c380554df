"""The OpenAI embeddings request: every parameter the router reads or forwards, checked for
OpenAI's types and ranges (a 400 naming the parameter, in OpenAI's words: `param_errors`).

    model            a non-empty string: `auto`, an embedding tier or an embedding model
    input            a string, an array of strings, an array of token ids (integers), or an
                     array of such arrays; never empty; at most MAX_INPUTS items
    encoding_format  "float" | "base64" (the `openai` SDK asks for base64 by default)
    dimensions       an integer >= 1
    user             a string
    metadata         the router's own: an object of strings (rules' `metadata` conditions;
                     not sent to the provider)

Unknown fields pass through to the provider. One walk gives what routing measures (the input's
text, its estimated tokens) and what the hard cap reserves (`billed_tokens`: an upper bound —
one token per UTF-8 byte of text, as `spend.reservation`, and each token id as one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tier_router.param_errors import bad_request, enum, invalid_type, length, missing, out_of_range, wrong
from tier_router.routing.engine import Decision, Rules
from tier_router.routing.features import measure_input
from tier_router.routing.tokens import estimate_tokens

MAX_INPUTS = 2048
"""OpenAI's limit on the number of inputs in one request."""
INPUT_OVERHEAD_TOKENS = 2
"""Per input, on top of its bytes: a start and an end token some embedding models add."""
ENCODING_FORMATS = ("float", "base64")
INPUT_TYPES = "a string, an array of strings, an array of integers, or an array of arrays of integers"


@dataclass(slots=True)
class EmbeddingInput:
    """What routing and the hard cap read of an embeddings request."""

    model: str
    texts: list[str] = field(default_factory=list)
    """The string inputs (token-id inputs have no text)."""
    count: int = 0
    """Inputs in the request."""
    chars: int = 0
    tokens: int = 0
    """Estimated for text (`routing.tokens`), exact for token ids: what rules measure."""
    billed_tokens: int = 0
    """An upper bound of what the provider can bill: the hard cap's reservation."""
    metadata: dict[str, str] = field(default_factory=dict)
    user: str | None = None


def parse_embedding(body: dict[str, Any]) -> EmbeddingInput:
    """Check `body` (a JSON object whose strings are valid Unicode: `body.read_json`) and
    measure its input; raises APIError 400 naming the first bad parameter."""
    model = body.get("model")
    if model.__class__ is not str:
        raise wrong("model", "a string", model)
    if not model:
        raise bad_request("Invalid 'model': empty string.", "model", "empty_string")
    request = EmbeddingInput(model)
    read_input(body.get("input"), request)
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODING_FORMATS:
        raise enum("encoding_format", encoding, ENCODING_FORMATS)
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if dimensions.__class__ is not int:
            raise invalid_type("dimensions", "an integer", dimensions)
        if dimensions < 1:
            raise out_of_range("dimensions", "integer", dimensions, 1, above=False)
    user = body.get("user")
    if user is not None and user.__class__ is not str:
        raise invalid_type("user", "a string", user)
    request.user = user
    metadata = body.get("metadata")
    if metadata is not None:
        if metadata.__class__ is not dict:
            raise invalid_type("metadata", "an object", metadata)
        for key, value in metadata.items():
            if value.__class__ is not str:
                raise invalid_type(f"metadata.{key}", "a string", value)
        request.metadata = metadata
    return request


def read_input(value: Any, request: EmbeddingInput) -> None:
    if value is None:
        raise missing("input")
    if value.__class__ is str:
        add_text(value, "input", request)
        return
    if value.__class__ is not list:
        raise invalid_type("input", INPUT_TYPES, value)
    if not value:
        raise length("input", "array", 1, 0)
    if len(value) > MAX_INPUTS:
        raise length("input", "array", MAX_INPUTS, len(value))
    first = value[0]
    if first.__class__ is int:  # one input as token ids
        add_ids(value, "input", request)
        return
    for i, item in enumerate(value):
        param = f"input[{i}]"
        if first.__class__ is str and item.__class__ is str:
            add_text(item, param, request)
        elif first.__class__ is list and item.__class__ is list:
            if not item:
                raise length(param, "array", 1, 0)
            add_ids(item, param, request)
        else:
            raise invalid_type(param, "strings only or token-id arrays only" if i else INPUT_TYPES, item)


def add_text(text: str, param: str, request: EmbeddingInput) -> None:
    if not text:
        raise bad_request(f"Invalid '{param}': empty string.", param, "empty_string")
    request.texts.append(text)
    request.count += 1
    request.chars += len(text)
    request.tokens += estimate_tokens(text)
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    request.billed_tokens += size + INPUT_OVERHEAD_TOKENS


def add_ids(ids: list[Any], param: str, request: EmbeddingInput) -> None:
    for j, token in enumerate(ids):
        if token.__class__ is not int:
            raise invalid_type(f"{param}[{j}]", "an integer (a token id)", token)
        if token < 0:
            raise out_of_range(f"{param}[{j}]", "integer", token, 0, above=False)
    request.count += 1
    request.tokens += len(ids)
    request.billed_tokens += len(ids) + INPUT_OVERHEAD_TOKENS


def is_embeddings(body: dict[str, Any]) -> bool:
    """An embeddings body (`input`, no `messages`): what explain routes as one."""
    return "input" in body and "messages" not in body


def embedding_decision(
    rules: Rules, parsed: EmbeddingInput, headers: Mapping[str, str], key: str | None = None
) -> Decision:
    """The routing decision for a checked embeddings request (`parse_embedding`): raises
    UnknownModelError or WrongKindError."""
    features = measure_input(parsed.texts, parsed.chars, parsed.tokens, headers, parsed.metadata, parsed.user)
    return rules.decide_embedding(parsed.model, features, key)
