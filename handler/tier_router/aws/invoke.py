"""Asynchronous Lambda invocations: `Invoke` with `X-Amz-Invocation-Type: Event`.

How a sampled request's judgement leaves the invocation that answered it (`quality.dispatch`):

    invoker = lambda_invoker(settings, http_client)       # the function this process runs as
    await invoker.invoke_event({"tier_router": "judge", "sample": {...}})   # 202: queued

Lambda puts the event on the function's queue and answers 202 at once; the function runs it
later, in an invocation of its own (`lambda_entry`). One REST call
(`POST /2015-03-31/functions/<name>/invocations`), signed by `sigv4` like every AWS call of
the router, on the shared httpx client.

- Size: an event over MAX_EVENT_BYTES is refused here (`EventTooLarge`), before any I/O.
  Lambda's own limit for asynchronous payloads was 256 KB until late 2025 (1 MB since);
  256 KB holds every judge event the router means to send and is accepted everywhere.
- Retries, as `client` does for a call that is not idempotent (a second copy of a judge event
  would judge, and pay, twice): throttling (429), 503 and transport failures where the request
  never left are retried with backoff (full jitter); a timeout, a dropped connection or another 5xx ends as
  `Outcome.UNKNOWN`, not retried. The caller waits on this call (on Lambda the buffered
  response waits for it), so attempts and the timeout are small.
- Errors: `InvokeError` with the typed `Failure` (outcome, code, status, redacted message);
  never the AWS secret key or session token.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from tier_router.aws.client import (
    NOT_SENT,
    THROTTLING,
    CredentialSource,
    Failure,
    Outcome,
    SignedEndpoint,
    Sleep,
    failure_of,
    resolve_endpoint,
    scrub,
)
from tier_router.aws.sigv4 import Credentials
from tier_router.errors import RouterError
from tier_router.settings import Settings

MAX_EVENT_BYTES = 256 * 1024
API_VERSION = "2015-03-31"
ACCEPTED = 202
OP = "Invoke"


class InvokeError(RouterError):
    """An asynchronous invocation was not queued; `failure` holds the facts (None: refused here)."""

    def __init__(self, message: str, failure: Failure | None = None) -> None:
        super().__init__(message)
        self.failure = failure


class EventTooLarge(InvokeError):
    """The event is over MAX_EVENT_BYTES: refused before any call."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the event is {size} bytes, over the {limit}-byte asynchronous invocation limit")
        self.size = size
        self.limit = limit


class LambdaInvoker(SignedEndpoint):
    """Queues events for one function (its name, or its ARN), in one region."""

    def __init__(
        self,
        function_name: str,
        *,
        credentials: CredentialSource,
        region: str | None = None,
        endpoint: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout_s: float = 2.0,
        max_attempts: int = 2,
        backoff_base_s: float = 0.05,
        max_event_bytes: int = MAX_EVENT_BYTES,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not function_name:
            raise ValueError("an asynchronous invocation needs a function name")
        self.function_name = function_name
        region, base = resolve_endpoint("lambda", "Lambda", region, endpoint)
        name = quote(function_name, safe="")  # an ARN's colons are percent-encoded, as SDKs do
        url = f"{base.rstrip('/')}/{API_VERSION}/functions/{name}/invocations"
        super().__init__(url, region, http_client, timeout_s)
        self.max_event_bytes = max_event_bytes
        self.max_attempts = max(1, max_attempts)
        self._credentials = credentials
        self._backoff_base_s = backoff_base_s
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"LambdaInvoker({self.function_name!r}, region={self.region!r}, url={self.url!r})"

    async def invoke_event(self, event: Mapping[str, Any]) -> None:
        """Queue `event` for the function (HTTP 202). Raises EventTooLarge (nothing sent) or
        InvokeError."""
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        if len(body) > self.max_event_bytes:
            raise EventTooLarge(len(body), self.max_event_bytes)
        last: Failure | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                await self._sleep(random.uniform(0, min(1.0, self._backoff_base_s * 2 ** (attempt - 1))))  # noqa: S311
            credentials = self._credentials()
            if credentials is None:
                raise self._error(Failure(Outcome.NO_CREDENTIALS, OP, self.function_name))
            try:
                response = await self._post(body, credentials)
            except httpx.TransportError as exc:
                message = scrub(str(exc), credentials)
                last = Failure(Outcome.UNKNOWN, OP, self.function_name, type(exc).__name__, 0, message)
                if isinstance(exc, NOT_SENT):
                    continue
                raise self._error(last) from None
            if response.status_code == ACCEPTED:
                return
            last = failure_of(response, OP, self.function_name, credentials)
            if response.status_code == 200:  # a synchronous answer: the Event type was ignored
                raise self._error(last._replace(outcome=Outcome.BAD_RESPONSE))
            if last.code in THROTTLING or response.status_code in (429, 503):
                continue
            if response.status_code >= 500:
                last = last._replace(outcome=Outcome.UNKNOWN)
            raise self._error(last)
        assert last is not None
        raise self._error(last._replace(outcome=Outcome.GAVE_UP, attempts=self.max_attempts))

    async def _post(self, body: bytes, credentials: Credentials) -> httpx.Response:
        headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event"}
        return await self._signed_post(body, headers, credentials, "lambda")

    @staticmethod
    def _error(failure: Failure) -> InvokeError:
        where = failure.subject
        if failure.outcome is Outcome.NO_CREDENTIALS:
            return InvokeError(f"cannot invoke {where}: no AWS credentials", failure)
        tries = f" after {failure.attempts} attempts" if failure.attempts > 1 else ""
        return InvokeError(f"invoking {where}: {failure.outcome.value}{tries} ({failure.detail()})", failure)


def lambda_invoker(
    settings: Settings, http_client: httpx.AsyncClient | None, **options: Any
) -> LambdaInvoker:
    """The invoker of the function this process runs as (`settings.lambda_function_name`), in
    its region, at `AWS_ENDPOINT_URL_LAMBDA` when set. `options`: see LambdaInvoker."""
    return LambdaInvoker(
        settings.lambda_function_name or "",
        credentials=settings.aws_credentials,
        region=settings.aws_region,
        endpoint=settings.aws_endpoint("lambda"),
        http_client=http_client,
        **options,
    )
