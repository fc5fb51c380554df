"""One client for AWS's JSON protocols (DynamoDB's 1.0, SSM's 1.1), used by every AWS caller.

Why not boto3: importing it and building a client costs ~200 ms of Lambda cold start. A
JSON-protocol call is one `POST /` with an `X-Amz-Target` header, signed by
`tier_router.aws.sigv4` with credentials fetched on every call (Lambda rotates them).

What a call does, so no caller writes it again:
- endpoint and region: `endpoint=` (a local moto or DynamoDB Local) or the public endpoint of
  `region` (`amazonaws.com.cn` in China); with an endpoint and no region, us-east-1 (local
  servers ignore it);
- retries with exponential backoff and full jitter (spreads the retries of many clients):
  throttling and 503 always (the request was refused, not run); connection failures where
  the request surely never left (connect errors, pool timeouts) always; timeouts, dropped
  connections and other 5xx only when the call is `idempotent` — a retried ADD could count
  money twice, a retried conditional put could report a lease we won as lost, so those end
  as `Outcome.UNKNOWN` instead;
- error parsing: the code from `__type` (or the `x-amzn-errortype` header), the message;
- redaction: no error text carries the AWS secret key, the session token or anything shaped
  like a provider key.

A failed call becomes a `Failure` (typed facts: what went wrong, the code, the redacted
message), and the caller's `failure` function turns it into the caller's own exception
(`StoreError`, `SecretsError`, ...): the client knows AWS, the caller knows its domain.
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

import httpx

from tier_router.aws.sigv4 import Credentials, sign
from tier_router.provider_keys import redact

THROTTLING = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottledException",
        "Throttling",
        "ThrottledException",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)
AUTH_ERRORS = frozenset(
    {
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignatureException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
NOT_FOUND = frozenset({"ParameterNotFound", "ResourceNotFoundException"})
CONDITION_FAILED = "ConditionalCheckFailedException"
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport failures where the request never reached AWS: always safe to retry."""

Sleep = Callable[[float], Awaitable[None]]
CredentialSource = Callable[[], Credentials | None]


class Service:
    """One AWS JSON-protocol service (a plain class: a dataclass costs ~1 ms of cold start)."""

    __slots__ = ("content_type", "label", "signing_name", "target_prefix")

    def __init__(self, signing_name: str, target_prefix: str, json_version: str, label: str) -> None:
        self.signing_name = signing_name  # also the endpoint's host label
        self.target_prefix = target_prefix
        self.content_type = f"application/x-amz-json-{json_version}"
        self.label = label


class Outcome(enum.Enum):
    """Why a call failed."""

    NO_CREDENTIALS = "no credentials"
    GAVE_UP = "gave up"  # throttled, 5xx or unreachable on every attempt
    UNKNOWN = "outcome unknown"  # a non-idempotent call failed ambiguously: not retried
    NOT_FOUND = "not found"
    AUTH = "credentials refused"
    CONDITION_FAILED = "condition failed"  # DynamoDB's conditional write did not hold
    REJECTED = "rejected"  # any other 4xx: a bug or a misconfiguration
    BAD_RESPONSE = "bad response"  # HTTP 200 without a JSON object


class Failure(NamedTuple):
    """The facts of one failed call. `message` is already redacted; `body` is the parsed error
    body of a failed condition (DynamoDB returns the old item there)."""

    outcome: Outcome
    op: str
    subject: str = ""
    code: str = ""
    status: int = 0  # 0: no HTTP answer (a transport error; `code` is its class name)
    message: str = ""
    attempts: int = 1
    body: Mapping[str, Any] | None = None

    def detail(self) -> str:
        """What the wire said: `HTTP 400 Code: message`, or `ConnectError: ...`."""
        if self.status:
            return f"HTTP {self.status} {self.code}: {self.message}".strip().rstrip(":")
        return f"{self.code}: {self.message}".strip().rstrip(":")


def resolve_endpoint(
    host_label: str, label: str, region: str | None, endpoint: str | None
) -> tuple[str, str]:
    """(region, endpoint): `endpoint` (a local moto, DynamoDB Local, fake) or the public endpoint
    of `region` (`amazonaws.com.cn` in China); with an endpoint and no region, us-east-1."""
    if not region:
        if not endpoint:
            raise ValueError(f"{label} needs a region: set AWS_REGION")
        region = "us-east-1"  # a local endpoint (moto, DynamoDB Local, LocalStack) ignores it
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return region, endpoint or f"https://{host_label}.{region}.{suffix}"


class SignedEndpoint:
    """One AWS endpoint reached by SigV4-signed POSTs, over a shared (or a lazily created own)
    httpx client: what every AWS client of the router (JSON protocol, Lambda Invoke) shares."""

    def __init__(
        self, url: str, region: str, http_client: httpx.AsyncClient | None, timeout_s: float
    ) -> None:
        self.url = url
        self.region = region
        self._http = http_client
        self._owns_http = http_client is None
        self._timeout = httpx.Timeout(timeout_s)

    async def aclose(self) -> None:
        """Close the httpx client if this endpoint created it (a shared one is the owner's)."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _signed_post(
        self, body: bytes, headers: dict[str, str], credentials: Credentials, service: str
    ) -> httpx.Response:
        headers.update(
            sign(
                method="POST",
                url=self.url,
                headers=headers,
                body=body,
                credentials=credentials,
                region=self.region,
                service=service,
            )
        )
        if self._http is None:  # created lazily: a cold start that never calls AWS pays nothing
            self._http = httpx.AsyncClient(timeout=self._timeout)
        return await self._http.post(self.url, content=body, headers=headers, timeout=self._timeout)


class AWSClient(SignedEndpoint):
    """Calls to one service in one region, over a shared (or a lazily created own) httpx client."""

    def __init__(
        self,
        service: Service,
        *,
        failure: Callable[[Failure], Exception],
        credentials: CredentialSource,
        region: str | None = None,
        endpoint: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout_s: float = 2.0,
        max_attempts: int = 3,
        backoff_base_s: float = 0.05,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        region, endpoint = resolve_endpoint(service.signing_name, service.label, region, endpoint)
        url = endpoint if endpoint.endswith("/") else endpoint + "/"
        super().__init__(url, region, http_client, timeout_s)
        self.service = service
        self._failure = failure
        self._credentials = credentials
        self.max_attempts = max(1, max_attempts)
        self._backoff_base_s = backoff_base_s
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"AWSClient({self.service.label}, region={self.region!r}, url={self.url!r})"

    async def call(
        self, op: str, payload: Mapping[str, Any], *, idempotent: bool, subject: str = ""
    ) -> dict[str, Any]:
        """One operation, retried as the module doc says; the answer's JSON object. Raises
        what the `failure` function makes of a `Failure`. `subject` names the target in
        errors (a table, a parameter name; never a value)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        last: Failure | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                await self.backoff(attempt - 1)
            credentials = self._credentials()
            if credentials is None:
                raise self._failure(Failure(Outcome.NO_CREDENTIALS, op, subject=subject))
            try:
                response = await self._post(op, body, credentials)
            except httpx.TransportError as exc:
                message = scrub(str(exc), credentials)
                last = Failure(Outcome.UNKNOWN, op, subject=subject, code=type(exc).__name__, message=message)
                if idempotent or isinstance(exc, NOT_SENT):
                    continue
                raise self._failure(last) from None
            if response.status_code == 200:
                data = _json_object(response)
                if data is None:  # the body is not echoed: it may hold secrets
                    raise self._failure(Failure(Outcome.BAD_RESPONSE, op, subject=subject, status=200))
                return data
            last = failure_of(response, op, subject, credentials)
            if last.code in THROTTLING or response.status_code == 503:
                continue
            if response.status_code >= 500:
                if idempotent:
                    continue
                last = last._replace(outcome=Outcome.UNKNOWN)
            raise self._failure(last)
        assert last is not None
        raise self._failure(last._replace(outcome=Outcome.GAVE_UP, attempts=self.max_attempts))

    async def backoff(self, attempt: int) -> None:
        """Sleep before retry `attempt + 1`: exponential backoff with full jitter, at most 1 s."""
        await self._sleep(random.uniform(0, min(1.0, self._backoff_base_s * 2**attempt)))  # noqa: S311

    async def _post(self, op: str, body: bytes, credentials: Credentials) -> httpx.Response:
        headers = {
            "Content-Type": self.service.content_type,
            "X-Amz-Target": f"{self.service.target_prefix}.{op}",
        }
        return await self._signed_post(body, headers, credentials, self.service.signing_name)


def scrub(text: str, credentials: Credentials) -> str:
    return redact(credentials.redact(text))


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def failure_of(response: httpx.Response, op: str, subject: str, credentials: Credentials) -> Failure:
    """Parse an error answer: {"__type": "...#Code", "message": "..."} (or the code in the
    `x-amzn-errortype` header, as "Code:http://internal.amazon.com/...")."""
    data = _json_object(response) or {}
    code = str(data.get("__type") or response.headers.get("x-amzn-errortype", "")).rpartition("#")[2]
    code = code.partition(":")[0]
    message = str(data.get("message") or data.get("Message") or "")
    if not code and not message:
        message = response.text[:200]
    if code == CONDITION_FAILED:
        outcome = Outcome.CONDITION_FAILED
    elif code in NOT_FOUND:
        outcome = Outcome.NOT_FOUND
    elif code in AUTH_ERRORS:
        outcome = Outcome.AUTH
    else:
        outcome = Outcome.REJECTED  # or, when retried to the end, GAVE_UP (set by the caller)
    body = data if outcome is Outcome.CONDITION_FAILED else None
    return Failure(outcome, op, subject, code, response.status_code, scrub(message, credentials), 1, body)
