"""Provider keys and other secrets from SSM Parameter Store (or Secrets Manager), without boto3.

Why no boto3: importing it and building a client costs ~190 ms of Lambda cold start. Both
services speak the AWS JSON 1.1 protocol — one `POST /` with an `X-Amz-Target` header — so a
tiny client does: requests are signed by `tier_router.store.sigv4` with credentials read
from the environment on every call (Lambda rotates them; the session token is sent as
`X-Amz-Security-Token`).

`SSMKeySource` is the Lambda flavour of `provider_keys.KeySource`: provider key `NAME` is the
SecureString parameter `<prefix>NAME`. It fetches nothing at construction (on Lambda the init
phase must not wait on the network). The first `get` fetches every configured name with
`GetParameters` (10 names per call, chunks in parallel) and caches the answers:

- cache older than `refresh_s`: `get` answers from the cache at once and starts ONE refresh
  in the background (stale-while-revalidate: a slow or failing SSM never adds latency to a
  request that already has its key). Concurrent callers share that refresh.
- a failed refresh keeps every cached value (logged once per outage, then at DEBUG) and is
  retried at most every `retry_s`; a successful one replaces the cache. A parameter that SSM
  reports as no longer existing (`InvalidParameters`) is dropped: that answer is
  authoritative, the operator deleted it.
- no answer yet for a name (first fetch, or a name outside `names`): `get` waits for the
  fetch (shared by concurrent callers). If it fails, `get` returns None — the forwarder
  then skips that provider with "<NAME> is not set" — and the next `get` after `retry_s`
  tries again.

`missing(names)` is synchronous (the app calls it at init and from /readyz), so it reports
only what is known: before the first fetch has completed it returns [] (nothing known yet —
and `Gateway.__init__` must not warn on every cold start); afterwards, every name without a
value — SSM's `InvalidParameters`, or names whose fetch failed. /readyz should first
`await source.refresh()` (fetches if the cache is empty or stale, joins one in flight,
raises `SecretsError` when some keys are unavailable because SSM could not be read) and then
call `missing()`. `refresh` respects `retry_s` unless `force=True`, so an unauthenticated
/readyz cannot be used to hammer SSM (GetParameters shares a per-account TPS quota).

Retries: GetParameters and GetSecretValue are reads, so throttling, 5xx and transport errors
(connect errors, timeouts, dropped connections) are retried with exponential backoff and full
jitter, `max_attempts` in all. Errors are `SecretsError` (`SecretNotFound` for a missing
parameter/secret); their text never includes a secret value, the AWS secret key or the
session token.

IAM: `ssm:GetParameters` on `arn:aws:ssm:<region>:<account>:parameter<prefix>*` (also used
by `fetch_parameter`, so one action covers everything), `kms:Decrypt` on the key if the
parameters use a customer-managed KMS key, and `secretsmanager:GetSecretValue` for
`fetch_secret`.

Endpoints: `endpoint=` wins, then `AWS_ENDPOINT_URL_SSM` / `AWS_ENDPOINT_URL_SECRETS_MANAGER`,
then `AWS_ENDPOINT_URL` (botocore's variables), else `https://<service>.<region>.amazonaws.com`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tier_router.provider_keys import KeySource, redact
from tier_router.store.sigv4 import Credentials, credentials_from_env, sign

log = logging.getLogger(__name__)

SSM_PREFIX_ENV = "TIER_ROUTER_SECRETS_SSM_PREFIX"
GET_PARAMETERS_MAX = 10  # GetParameters' per-call name limit
CONTENT_TYPE = "application/x-amz-json-1.1"

THROTTLING = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottledException",
        "TooManyRequestsException",
    }
)
AUTH_ERRORS = frozenset(
    {
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignatureException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)
NOT_FOUND = frozenset({"ParameterNotFound", "ResourceNotFoundException"})

Sleep = Callable[[float], Awaitable[None]]
CredentialSource = Callable[[], Credentials | None]


class SecretsError(Exception):
    """A secret could not be read. The message never contains secret material."""


class SecretNotFound(SecretsError):
    """The parameter or secret does not exist (or is not visible to these credentials)."""


class _Service:
    """One AWS JSON-1.1 service (a plain class: a dataclass costs ~1 ms of cold start)."""

    __slots__ = ("endpoint_env", "label", "signing_name", "target_prefix")

    def __init__(self, signing_name: str, target_prefix: str, endpoint_env: str, label: str) -> None:
        self.signing_name = signing_name  # also the hostname label
        self.target_prefix = target_prefix
        self.endpoint_env = endpoint_env
        self.label = label


SSM = _Service("ssm", "AmazonSSM", "AWS_ENDPOINT_URL_SSM", "SSM")
SECRETS_MANAGER = _Service(
    "secretsmanager", "secretsmanager", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "Secrets Manager"
)


class _AWSJSONClient:
    """One AWS JSON-1.1 service over a (shared) httpx client: signing, retries, error mapping."""

    def __init__(
        self,
        service: _Service,
        *,
        http_client: httpx.AsyncClient,
        region: str | None = None,
        endpoint: str | None = None,
        credentials: CredentialSource = credentials_from_env,
        timeout_s: float = 2.0,
        max_attempts: int = 3,
        backoff_base_s: float = 0.05,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        endpoint = endpoint or os.environ.get(service.endpoint_env) or os.environ.get("AWS_ENDPOINT_URL")
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            if not endpoint:
                raise ValueError(f"{service.label} needs a region: set AWS_REGION")
            region = "us-east-1"  # a local endpoint (moto, LocalStack) ignores it
        suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        self.service = service
        self.region = region
        self.url = _post_url(endpoint or f"https://{service.signing_name}.{region}.{suffix}")
        self._http = http_client
        self._credentials = credentials
        self._timeout = httpx.Timeout(timeout_s)
        self._max_attempts = max(1, max_attempts)
        self._backoff_base_s = backoff_base_s
        self._sleep = sleep

    async def call(self, op: str, payload: Mapping[str, Any], what: str) -> dict[str, Any]:
        """One read operation with retries. `what` names the target in errors (never a value)."""
        label = f"{self.service.label} {op} ({what})"
        body = json.dumps(payload, separators=(",", ":")).encode()
        last = ""
        for attempt in range(self._max_attempts):
            if attempt:
                await self._backoff(attempt - 1)
            credentials = self._credentials()
            if credentials is None:
                raise SecretsError(
                    f"{label}: no AWS credentials in the environment "
                    "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
                )
            headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": f"{self.service.target_prefix}.{op}"}
            headers.update(
                sign(
                    method="POST",
                    url=self.url,
                    headers=headers,
                    body=body,
                    credentials=credentials,
                    region=self.region,
                    service=self.service.signing_name,
                )
            )
            try:
                response = await self._http.post(
                    self.url, content=body, headers=headers, timeout=self._timeout
                )
            except httpx.TransportError as exc:  # reads: every transport failure is safe to retry
                last = f"{type(exc).__name__}: {_scrub(str(exc), credentials)}".rstrip(": ")
                continue
            if response.status_code == 200:
                try:
                    data = response.json()
                except ValueError:
                    data = None
                if not isinstance(data, dict):  # the body is not echoed: it may hold secrets
                    raise SecretsError(f"{label}: the response is not a JSON object")
                return data
            code, message = _error_of(response)
            message = _scrub(message, credentials)
            last = f"HTTP {response.status_code} {code}: {message}".strip().rstrip(":")
            if code in THROTTLING or response.status_code >= 500:
                continue
            if code in NOT_FOUND:
                raise SecretNotFound(f"{label}: not found: {message or code}")
            if code in AUTH_ERRORS:
                raise SecretsError(f"{label}: {self.service.label} refused the credentials: {last}")
            raise SecretsError(f"{label} failed: {last}")
        raise SecretsError(f"{label}: gave up after {self._max_attempts} attempts ({last})")

    async def _backoff(self, attempt: int) -> None:
        """Exponential backoff with full jitter."""
        await self._sleep(random.uniform(0, min(1.0, self._backoff_base_s * 2**attempt)))  # noqa: S311


async def _get_parameters(client: _AWSJSONClient, names: list[str]) -> tuple[dict[str, str], set[str]]:
    """GetParameters for at most 10 full parameter names -> ({name: value}, names SSM lacks)."""
    what = names[0] if len(names) == 1 else f"{len(names)} parameters: {', '.join(names)}"
    data = await client.call("GetParameters", {"Names": names, "WithDecryption": True}, what)
    wanted = set(names)
    found: dict[str, str] = {}
    for param in data.get("Parameters") or []:
        if not isinstance(param, dict):
            continue
        # Asked for by ARN (a parameter shared from another account)? Then match the ARN.
        name = next((param.get(k) for k in ("Name", "ARN") if param.get(k) in wanted), None)
        value = param.get("Value")
        if name is not None and isinstance(value, str):
            found[name] = value
    return found, wanted - set(found)


class SSMKeySource(KeySource):
    """`KeySource` over SSM Parameter Store: key `NAME` is the parameter `<prefix>NAME`.

    Lazy, cached, refreshed in the background, resilient to SSM outages (module doc)."""

    def __init__(
        self,
        prefix: str,
        *,
        names: Iterable[str],
        http_client: httpx.AsyncClient,
        region: str | None = None,
        endpoint: str | None = None,
        refresh_s: float = 300,
        clock: Callable[[], float] = time.monotonic,
        retry_s: float = 5.0,
        credentials: CredentialSource = credentials_from_env,
        timeout_s: float = 2.0,
        max_attempts: int = 3,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__({})
        self.prefix = prefix
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self._names: dict[str, None] = dict.fromkeys(names)  # ordered set
        self._client = _AWSJSONClient(
            SSM,
            http_client=http_client,
            region=region,
            endpoint=endpoint,
            credentials=credentials,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            sleep=sleep,
        )
        self._clock = clock
        self._values: dict[str, str] = {}
        self._absent: set[str] = set()  # SSM said: no such parameter
        self._attempted = False  # a fetch has completed (either way)
        self._loaded_at: float | None = None  # clock() of the last fully successful fetch
        self._retry_at = float("-inf")  # no fetch before this, after a failure
        self._task: asyncio.Task[SecretsError | None] | None = None
        self._failing = False
        self.last_error: str | None = None  # the last fetch's error, None once one succeeds

    def __repr__(self) -> str:
        return (
            f"SSMKeySource(prefix={self.prefix!r}, names={len(self._names)}, "
            f"cached={len(self._values)}, url={self._client.url!r})"
        )

    # --- the KeySource interface --------------------------------------------------------

    async def get(self, name: str) -> str | None:
        self._names.setdefault(name, None)
        now = self._clock()
        if name not in self._values and name not in self._absent:
            if self._in_flight() or now >= self._retry_at:
                await self._join()  # never raises: a failure leaves the value unknown (None)
        elif self._stale(now) and now >= self._retry_at:
            self._start()  # serve the cached value now; refresh in the background
        return self._values.get(name)

    def missing(self, names: Iterable[str]) -> list[str]:
        """Names without a value. [] until the first fetch completes (nothing is known yet)."""
        if not self._attempted:
            return []
        return sorted(n for n in set(names) if n not in self._values)

    def known_values(self, names: Iterable[str]) -> list[str]:
        return [v for v in (self._values.get(n) for n in names) if v]

    # --- for /readyz and tests ----------------------------------------------------------

    async def refresh(self, *, force: bool = False) -> None:
        """Fetch now if needed (cache empty, incomplete or stale; `retry_s` respected unless
        `force`), joining a fetch already in flight. Raises SecretsError if some names have
        no value because SSM could not be read; names SSM says do not exist are not an error
        here (see `missing`). A failing refresh over a full cache does not raise: the router
        still serves; `last_error` says what is wrong."""
        now = self._clock()
        if self._in_flight() or force or (self._needs_fetch(now) and now >= self._retry_at):
            await self._join()
        unknown = [n for n in self._names if n not in self._values and n not in self._absent]
        if unknown and self.last_error is not None:
            raise SecretsError(f"provider keys {', '.join(unknown)} unavailable: {self.last_error}")

    @property
    def loaded_at(self) -> float | None:
        """clock() of the last fully successful fetch, None before one."""
        return self._loaded_at

    # --- internals ----------------------------------------------------------------------

    def _stale(self, now: float) -> bool:
        return self._loaded_at is None or now - self._loaded_at >= self.refresh_s

    def _needs_fetch(self, now: float) -> bool:
        return self._stale(now) or any(n not in self._values and n not in self._absent for n in self._names)

    def _in_flight(self) -> bool:
        task = self._task
        return task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()

    def _start(self) -> asyncio.Task[SecretsError | None]:
        """The fetch in flight on this loop, or a new one. One at a time."""
        if not self._in_flight():
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._fetch_all(), name="tier-router-ssm-keys")
        assert self._task is not None
        return self._task

    async def _join(self) -> SecretsError | None:
        # shield: a caller cancelled (say, a request timeout) does not cancel the shared fetch.
        return await asyncio.shield(self._start())

    async def _fetch_all(self) -> SecretsError | None:
        """Fetch every name; apply what arrived; never raises (returns the error instead)."""
        by_param = {self.prefix + n: n for n in self._names}
        params = list(by_param)
        chunks = [params[i : i + GET_PARAMETERS_MAX] for i in range(0, len(params), GET_PARAMETERS_MAX)]
        results = await asyncio.gather(
            *(_get_parameters(self._client, chunk) for chunk in chunks), return_exceptions=True
        )
        errors: list[str] = []
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # CancelledError, KeyboardInterrupt, ...
                if isinstance(result, SecretsError):
                    errors.append(self._scrub(str(result)))
                else:  # a bug, or something unforeseen: still never take the router down
                    errors.append(self._scrub(f"{type(result).__name__}: {result}"))
                continue
            found, absent = result
            for param, value in found.items():
                self._values[by_param[param]] = value
                self._absent.discard(by_param[param])
            for param in absent:
                self._values.pop(by_param[param], None)
                self._absent.add(by_param[param])
        self._attempted = True
        now = self._clock()
        if errors:
            self._retry_at = now + self.retry_s
            self.last_error = "; ".join(errors)
            level = logging.DEBUG if self._failing else logging.WARNING
            self._failing = True
            if self._values:
                log.log(
                    level,
                    "could not refresh provider keys from SSM (%s); serving %d cached keys, "
                    "retrying every %gs",
                    self.last_error,
                    len(self._values),
                    self.retry_s,
                )
            else:
                log.log(
                    level,
                    "could not read provider keys from SSM (%s); their providers are skipped, "
                    "retrying every %gs",
                    self.last_error,
                    self.retry_s,
                )
            return SecretsError(self.last_error)
        if self._failing:
            log.warning("provider keys read from SSM again")
        self._failing = False
        self._loaded_at = now
        self._retry_at = float("-inf")
        self.last_error = None
        return None

    def _scrub(self, text: str) -> str:
        return redact(text, self._values.values())


# --- one-shot helpers ---------------------------------------------------------------------


async def fetch_parameter(
    name: str,
    *,
    http_client: httpx.AsyncClient | None = None,
    region: str | None = None,
    endpoint: str | None = None,
    credentials: CredentialSource = credentials_from_env,
    timeout_s: float = 2.0,
    max_attempts: int = 3,
    sleep: Sleep = asyncio.sleep,
) -> str:
    """The (decrypted) value of one SSM parameter, via GetParameters (same IAM action as the
    key source). Raises SecretNotFound if it does not exist, SecretsError otherwise."""
    async with _client_for(http_client) as http:
        client = _AWSJSONClient(
            SSM,
            http_client=http,
            region=region,
            endpoint=endpoint,
            credentials=credentials,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            sleep=sleep,
        )
        found, _ = await _get_parameters(client, [name])
    if name not in found:
        raise SecretNotFound(f"SSM parameter {name!r} not found in {client.region}")
    return found[name]


async def fetch_secret(
    secret_id: str,
    *,
    version_stage: str | None = None,
    http_client: httpx.AsyncClient | None = None,
    region: str | None = None,
    endpoint: str | None = None,
    credentials: CredentialSource = credentials_from_env,
    timeout_s: float = 2.0,
    max_attempts: int = 3,
    sleep: Sleep = asyncio.sleep,
) -> str:
    """A Secrets Manager secret's `SecretString` (name or ARN; AWSCURRENT unless
    `version_stage`). Raises SecretNotFound, or SecretsError (binary secrets too)."""
    payload: dict[str, str] = {"SecretId": secret_id}
    if version_stage:
        payload["VersionStage"] = version_stage
    async with _client_for(http_client) as http:
        client = _AWSJSONClient(
            SECRETS_MANAGER,
            http_client=http,
            region=region,
            endpoint=endpoint,
            credentials=credentials,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            sleep=sleep,
        )
        data = await client.call("GetSecretValue", payload, secret_id)
    value = data.get("SecretString")
    if not isinstance(value, str):
        raise SecretsError(f"Secrets Manager secret {secret_id!r} has no SecretString (binary secret?)")
    return value


def key_source(
    names: Iterable[str],
    *,
    http_client: httpx.AsyncClient,
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> KeySource:
    """`SSMKeySource` when TIER_ROUTER_SECRETS_SSM_PREFIX is set, else the environment one."""
    env = os.environ if environ is None else environ
    prefix = env.get(SSM_PREFIX_ENV)
    if not prefix:
        return KeySource(environ)
    return SSMKeySource(prefix, names=names, http_client=http_client, **options)


# --- wire helpers -------------------------------------------------------------------------


@asynccontextmanager
async def _client_for(http_client: httpx.AsyncClient | None) -> AsyncIterator[httpx.AsyncClient]:
    if http_client is not None:
        yield http_client
        return
    async with httpx.AsyncClient() as client:
        yield client


def _post_url(endpoint: str) -> str:
    return endpoint if endpoint.endswith("/") else endpoint + "/"


def _scrub(text: str, credentials: Credentials) -> str:
    return redact(credentials.redact(text))


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from a JSON-1.1 error: {"__type": "...#Code", "message": "..."}."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    code = str(data.get("__type") or response.headers.get("x-amzn-errortype", "")).rpartition("#")[2]
    code = code.partition(":")[0]  # the header form is "Code:http://internal.amazon.com/..."
    message = str(data.get("message") or data.get("Message") or "")
    if not code and not message:
        message = response.text[:200]
    return code, message
