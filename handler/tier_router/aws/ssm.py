"""Provider keys and the router keys file from SSM Parameter Store (SecureString parameters).

`SSMKeySource` is the Lambda flavour of `provider_keys.KeySource`, chosen by `key_source`
when `Settings.secrets_ssm_prefix` is set: provider key `NAME` is the parameter
`<prefix>NAME`. It fetches nothing at construction (on Lambda the init phase must not wait
on the network). The first `get` fetches every configured name with `GetParameters` (10
names per call, chunks in parallel) and caches the answers:

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
and the gateway must not warn on every cold start); afterwards, every name without a value.
/readyz should first `await source.refresh()` (fetches if the cache is empty or stale, joins
one in flight, raises `SecretsError` when some keys are unavailable because SSM could not be
read) and then call `missing()`. `refresh` respects `retry_s` unless `force=True`, so an
unauthenticated /readyz cannot be used to hammer SSM (GetParameters shares a per-account
TPS quota).

Calls go through `tier_router.aws.client` (signing, retries — every call here is a read —
and redaction). Errors are `SecretsError` (`SecretNotFound` for a missing parameter); their
text never includes a secret value, the AWS secret key or the session token.

IAM: `ssm:GetParameters` on `arn:aws:ssm:<region>:<account>:parameter<prefix>*` (also used
by `fetch_parameter`, so one action covers everything), and `kms:Decrypt` on the key if the
parameters use a customer-managed KMS key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from tier_router.aws.client import AWSClient, Failure, Outcome, Service
from tier_router.errors import SecretNotFound, SecretsError
from tier_router.provider_keys import KeySource, redact
from tier_router.settings import Settings

log = logging.getLogger(__name__)

SSM = Service("ssm", "AmazonSSM", "1.1", "SSM")
GET_PARAMETERS_MAX = 10  # GetParameters' per-call name limit


def secrets_error(failure: Failure) -> SecretsError:
    """An SSM call's failure as the exception callers of this module expect."""
    label = f"SSM {failure.op} ({failure.subject})"
    if failure.outcome is Outcome.NO_CREDENTIALS:
        return SecretsError(
            f"{label}: no AWS credentials in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        )
    if failure.outcome is Outcome.NOT_FOUND:
        return SecretNotFound(f"{label}: not found: {failure.message or failure.code}")
    if failure.outcome is Outcome.AUTH:
        return SecretsError(f"{label}: SSM refused the credentials: {failure.detail()}")
    if failure.outcome is Outcome.GAVE_UP:
        return SecretsError(f"{label}: gave up after {failure.attempts} attempts ({failure.detail()})")
    if failure.outcome is Outcome.BAD_RESPONSE:
        return SecretsError(f"{label}: the response is not a JSON object")
    return SecretsError(f"{label} failed: {failure.detail()}")


def ssm_client(settings: Settings, http_client: httpx.AsyncClient | None, **options: Any) -> AWSClient:
    """The SSM client `settings` describe (region, endpoint, credentials). `options`:
    `timeout_s`, `max_attempts`, `backoff_base_s`, `sleep` (tests)."""
    return AWSClient(
        SSM,
        failure=secrets_error,
        credentials=settings.aws_credentials,
        region=settings.aws_region,
        endpoint=settings.aws_endpoint("ssm"),
        http_client=http_client,
        **options,
    )


async def get_parameters(client: AWSClient, names: list[str]) -> tuple[dict[str, str], set[str]]:
    """GetParameters for at most 10 full parameter names -> ({name: value}, names SSM lacks)."""
    what = names[0] if len(names) == 1 else f"{len(names)} parameters: {', '.join(names)}"
    data = await client.call(
        "GetParameters", {"Names": names, "WithDecryption": True}, idempotent=True, subject=what
    )
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
        client: AWSClient,
        refresh_s: float = 300,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__({})
        self.prefix = prefix
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self._names: dict[str, None] = dict.fromkeys(names)  # ordered set
        self._client = client
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

    def known(self, names: Iterable[str]) -> list[str]:
        """The values of `names` fetched so far."""
        return [self._values[name] for name in names if name in self._values]

    def missing(self, names: Iterable[str]) -> list[str]:
        """Names without a value. [] until the first fetch completes (nothing is known yet)."""
        if not self._attempted:
            return []
        return sorted(n for n in set(names) if n not in self._values)

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

    def mark_stale(self) -> None:
        """Count the cached values as stale, as if `refresh_s` had passed: the next `get` serves
        them and refreshes in the background (a SnapStart restore: the cache may be days old)."""
        self._loaded_at = None

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
            *(get_parameters(self._client, chunk) for chunk in chunks), return_exceptions=True
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
        if self.on_change is not None:  # before any caller gets a value from this fetch
            self.on_change()
        now = self._clock()
        if errors:
            self._retry_at = now + self.retry_s
            self.last_error = "; ".join(errors)
            self._log_failure()
            return SecretsError(self.last_error)
        if self._failing:
            log.warning("provider keys read from SSM again")
        self._failing = False
        self._loaded_at = now
        self._retry_at = float("-inf")
        self.last_error = None
        return None

    def _log_failure(self) -> None:
        """Once per outage at WARNING, then at DEBUG until a fetch succeeds."""
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        if self._values:
            what, then = "refresh", f"serving {len(self._values)} cached keys"
        else:
            what, then = "read", "their providers are skipped"
        log.log(
            level,
            "could not %s provider keys from SSM (%s); %s, retrying every %gs",
            what,
            self.last_error,
            then,
            self.retry_s,
        )

    def _scrub(self, text: str) -> str:
        return redact(text, self._values.values())


# --- what the gateway calls -----------------------------------------------------------------


def key_source(
    names: Iterable[str],
    *,
    http_client: httpx.AsyncClient,
    settings: Settings,
    **options: Any,
) -> KeySource:
    """`SSMKeySource` when `settings.secrets_ssm_prefix` is set, else the keys in
    `settings.environ`. `options` go to the SSM client (`ssm_client`)."""
    if not settings.secrets_ssm_prefix:
        return KeySource(settings.environ)
    client = ssm_client(settings, http_client, **options)
    return SSMKeySource(settings.secrets_ssm_prefix, names=names, client=client)


async def fetch_parameter(
    name: str,
    *,
    settings: Settings,
    http_client: httpx.AsyncClient | None = None,
    **options: Any,
) -> str:
    """The (decrypted) value of one SSM parameter, via GetParameters (same IAM action as the
    key source). Raises SecretNotFound if it does not exist, SecretsError otherwise. Without
    `http_client`, a temporary one."""
    client = ssm_client(settings, http_client, **options)
    try:
        found, _ = await get_parameters(client, [name])
    finally:
        await client.aclose()
    if name not in found:
        raise SecretNotFound(f"SSM parameter {name!r} not found in {client.region}")
    return found[name]
