"""Reading a request body: JSON only, bounded in size, strict about what JSON is.

Refused with an OpenAI-style error: a non-JSON content type (415), a body over the limit
(413, as soon as it passes the limit — never buffered whole), invalid UTF-8, invalid JSON,
NaN/Infinity however written (also as a number too large for a float, `1e400`), unpaired
surrogates, or anything but an object (400).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError

from tier_router.errors import APIError, ClientGone, RequestError
from tier_router.routing.request import MAY_HOLD_SURROGATES, encodable

Receive = Callable[[], Awaitable[dict[str, Any]]]


def reject_constant(name: str) -> float:
    """NaN and Infinity are not JSON: refuse them rather than forward them to a provider."""
    raise ValueError(f"{name} is not valid JSON")


class NonFiniteNumber(RequestError):
    """A JSON number too large for a float (`1e400`): Python would make it infinity, which
    a provider would then receive as the non-JSON token `Infinity`."""


def finite_float(text: str) -> float:
    """`parse_float` hook: the default conversion, then one comparison on the hot path."""
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan; NaN itself cannot come from a JSON number
        raise NonFiniteNumber(f"the number {text[:32]} is too large")
    return value


JSON_DECODER = json.JSONDecoder(parse_constant=reject_constant, parse_float=finite_float)
"""Built once: `json.loads(..., parse_constant=...)` would build a decoder per request."""


async def read_json(headers: Mapping[str, str], receive: Receive, limit: int) -> dict[str, Any]:
    content_type = headers.get("content-type", "application/json")
    if "json" not in content_type:
        raise APIError(
            415,
            f"Content-Type must be application/json, got {content_type!r}.",
            code="unsupported_media_type",
        )
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    raw = await read_body(receive, limit)
    try:
        # Strict UTF-8 first: json.loads(bytes) would let encoded surrogates through.
        body = JSON_DECODER.decode(raw.decode("utf-8-sig"))
    except NonFiniteNumber as exc:
        raise APIError(
            400,
            f"The request body is not valid JSON ({exc}: only finite numbers are accepted).",
            code="invalid_json",
        ) from None
    except (ValueError, RecursionError) as exc:
        reason = "invalid UTF-8" if isinstance(exc, UnicodeDecodeError) else "invalid JSON"
        raise APIError(400, f"The request body is not valid JSON ({reason}).", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    if MAY_HOLD_SURROGATES.search(raw) and not encodable(body):
        raise APIError(
            400, "The request body contains an unpaired surrogate (invalid Unicode).", code="invalid_json"
        )
    return body


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refused as soon as it passes `limit`. Reads ASGI messages directly:
    usually there is exactly one, and `Request.stream()` would wrap it in an async generator."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone("the client left while sending its body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        if not message.get("more_body", False):
            return b"".join((*chunks, chunk)) if chunks else chunk
        chunks.append(chunk)


def too_large(limit: int) -> APIError:
    return APIError(
        413,
        f"The request body is larger than this router's limit of {limit} bytes.",
        code="request_too_large",
    )


def invalid_request(exc: ValidationError) -> APIError:
    error = exc.errors(include_url=False, include_input=False)[0]
    param = ".".join(str(part) for part in error["loc"])
    return APIError(
        400, f"Invalid request: {param}: {error['msg']}.", code="invalid_request", param=param or None
    )
