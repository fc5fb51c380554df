"""Responses: OpenAI-shaped errors (more to come with the lifecycle restructure)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.responses import Response

from tier_router.errors import APIError


def error_response(exc: APIError, extra_headers: Mapping[str, str] | None = None) -> Response:
    headers = {**exc.headers, **(extra_headers or {})}
    return Response(
        json.dumps(exc.body()).encode(), status_code=exc.status, headers=headers, media_type="application/json"
    )
