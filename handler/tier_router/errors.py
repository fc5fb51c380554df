"""OpenAI-shaped HTTP errors.

Clients use the official OpenAI SDK, which maps statuses to exception classes and reads
`{"error": {"message", "type", "param", "code"}}`; every error the router returns has that
shape, a correct status, and nothing secret or internal (no stack traces, no keys).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.responses import Response

TYPE_FOR_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or TYPE_FOR_STATUS.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def with_headers(self, headers: Mapping[str, str]) -> APIError:
        self.headers = {**headers, **self.headers}
        return self

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, extra_headers: Mapping[str, str] | None = None) -> Response:
        headers = {**self.headers, **(extra_headers or {})}
        return Response(
            json.dumps(self.body()).encode(),
            status_code=self.status,
            headers=headers,
            media_type="application/json",
        )
