"""Every error tier-router raises on purpose, as one hierarchy.

    RouterError                      base: `except RouterError` catches anything deliberate
    ├── ConfigError (ValueError)     a configuration file or setting is wrong; found at load
    │     RulesError (routing.loader), RegexError (routing.conditions), KeysError (router_keys)
    ├── StoreError                   the state store failed an operation (store.base)
    │   └── StoreUnavailable         ... and is unreachable or too slow (timeout, throttling)
    ├── SecretsError                 provider or router keys could not be read (aws.ssm)
    │   └── SecretNotFound
    ├── RequestError (ValueError)    the client's request cannot be served as written
    │     UnknownModelError, WrongKindError (routing.engine), ClientRequestError (providers.base),
    │     NonFiniteNumber (body), Unbounded (spend.reservation): a cost no hard cap can
    │     bound (file parts, bad `n`)
    ├── UpstreamError                a provider failed or refused
    │     UpstreamProtocolError (providers.base): an answer that is not valid
    │     AllCandidatesFailed, UpstreamClientError (fallback)
    ├── ClientGone                   the client hung up before anything was sent to it
    ├── ReplayError (replay)         a replay cannot start (unreadable log, unknown baseline)
    ├── InvokeError (aws.invoke)     an asynchronous Lambda invocation was not queued
    │     EventTooLarge: over the payload limit, refused before any call
    └── APIError                     an answer for the client: an HTTP status and an
                                     OpenAI-shaped body (rendered by `responses.error_response`)

Each module defines its own subclasses next to the code that raises them; `tests/test_errors.py`
holds every exception class in the package to this tree. Clients use the official OpenAI SDK,
which maps statuses to exception classes and reads `{"error": {"message", "type", "param",
"code"}}`: every error the router returns has that shape, a correct status, and nothing secret
or internal (no stack traces, no keys).
"""

from __future__ import annotations

from collections.abc import Mapping


class RouterError(Exception):
    """Base of every error tier-router raises on purpose."""


class ConfigError(RouterError, ValueError):
    """A configuration file or setting is wrong (found at load, never per request)."""


class StoreError(RouterError):
    """A state-store operation failed."""


class StoreUnavailable(StoreError):
    """The store is unreachable, throttling, or slower than its deadline. Components that
    fail open treat every StoreError alike; `on_store_error: reject` budgets answer 503."""


class SecretsError(RouterError):
    """A secret (provider key, router keys) could not be read."""


class SecretNotFound(SecretsError):
    """The secret does not exist."""


class RequestError(RouterError, ValueError):
    """The client's request cannot be served as written."""


class UpstreamError(RouterError):
    """A provider failed, answered something invalid, or refused the request."""


class ClientGone(RouterError):
    """The client hung up before anything was sent to it."""


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


class APIError(RouterError):
    """An answer for the client: status, OpenAI error fields and extra headers."""

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
