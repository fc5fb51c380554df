"""The composition root: everything a request needs, built once per process.

At import time on Lambda (the init phase), so a warm invocation does only per-request work:
the rules, the shared httpx client (pooled keep-alive connections, TLS roots), the state
store behind its deadline, breakers, spend controls, provider and router keys, the access
log and the request lifecycle. Nothing here runs per request.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tier_router.admission import SpendControls
from tier_router.auth import Auth, KeysLoader
from tier_router.aws.ssm import fetch_parameter, key_source
from tier_router.body import BodyLimits
from tier_router.breakers import BreakerBoard, BreakerConfig, BreakerHealth, Health
from tier_router.conversations import Conversations
from tier_router.disconnect import DisconnectWatch
from tier_router.forwarder import Forwarder
from tier_router.lifecycle import Drainer, Lifecycle
from tier_router.provider_keys import KeySource
from tier_router.providers.base import dumps
from tier_router.quality.dispatch import lambda_dispatch
from tier_router.quality.facts import Facts
from tier_router.quality.loop import QualityLoop
from tier_router.quality.sampling import Sampling
from tier_router.redaction import MIN_SECRET_CHARS, Redactor, redact_logs
from tier_router.router_keys import KeyRecord, KeyRing, KeysFileWatch, parse_keys, plain_keys, plain_secrets
from tier_router.routing.compiled import load_rules_fast
from tier_router.routing.engine import Rules
from tier_router.settings import Settings
from tier_router.spend.baseline import Baseline
from tier_router.store.base import Store
from tier_router.store.deadline import DeadlineStore
from tier_router.store.factory import open_store
from tier_router.telemetry import AccessLog

if TYPE_CHECKING:
    from tier_router.quality.runner import Judging
    from tier_router.tracing.spans import Tracing

log = logging.getLogger("tier_router")
WATCH_AFTER_S = 0.25
"""How long a request runs before the router starts watching for a client disconnect."""
CA_DIR = Path(__file__).resolve().parent.parent / "cacerts"
"""In the Lambda artifact: certifi's roots as an OpenSSL hashed directory (handler/Makefile)."""


def tls_verify(environ: Mapping[str, str], ca_dir: Path = CA_DIR) -> ssl.SSLContext | bool:
    """How the shared client verifies TLS. With the artifact's hashed CA directory, OpenSSL
    loads only the roots a handshake needs: building a context from certifi's whole bundle
    parses ~120 certificates, 20-35 ms of every cold start. Anywhere else, or when the operator
    points SSL_CERT_FILE / SSL_CERT_DIR elsewhere, httpx's default (certifi, or those)."""
    if environ.get("SSL_CERT_FILE") or environ.get("SSL_CERT_DIR") or not ca_dir.is_dir():
        return True
    return ssl.create_default_context(capath=str(ca_dir))


POOL_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=30)
"""Idle connections are dropped after 30 s, below common server keep-alive timeouts (ALB 60 s,
nginx 75 s), so the router does not reuse a connection the provider is closing."""


def make_http_client(settings: Settings) -> httpx.AsyncClient:
    """The one client per process: pooled keep-alive connections reused across requests (and
    across Lambda invocations); `mock://` is served in-process."""
    return make_http_pool(settings)[0]


def make_http_pool(settings: Settings) -> tuple[httpx.AsyncClient, httpx.AsyncHTTPTransport]:
    """`make_http_client`'s client and the transport holding its pooled connections, whose
    `aclose()` empties the pool and leaves it usable: new connections are opened on the next
    request (a SnapStart restore, `tier_router.snapstart`). `verify` and `limits` are the
    client's too, for proxies set in the environment."""
    verify = tls_verify(settings.environ)
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=POOL_LIMITS)
    client = httpx.AsyncClient(
        verify=verify,
        limits=POOL_LIMITS,
        transport=transport,
        mounts={"mock://": LazyMockTransport()},
        timeout=httpx.Timeout(30.0),
        follow_redirects=False,
    )
    return client, transport


class LazyMockTransport(httpx.AsyncBaseTransport):
    """`mock://` served in-process by `providers.mock.MockTransport`, whose modules are imported
    by the first `mock://` request: a rules file without mock providers never loads them
    (docs/coldstart.md)."""

    def __init__(self) -> None:
        self._mock: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._mock is None:
            from tier_router.providers.mock import MockTransport

            self._mock = MockTransport()
        return await self._mock.handle_async_request(request)


class Gateway:
    """Everything a request needs, built once."""

    def __init__(
        self,
        settings: Settings,
        *,
        rules: Rules | None = None,
        client: httpx.AsyncClient | None = None,
        keys: KeySource | None = None,
        health: Health | None = None,
        store: Store | None = None,
        span_processor: Any = None,
    ) -> None:
        self.settings = settings
        self.rules = rules or load_rules_fast(
            settings.rules_path, expect_compiled=settings.lambda_function_name is not None
        )
        self.transport: httpx.AsyncHTTPTransport | None = None
        """The connection pool of the client built here (None: the client was given)."""
        if client is None:
            client, self.transport = make_http_pool(settings)
        self.client = client
        self.key_names = sorted({p.api_key_env for p in self.rules.spec.providers.values() if p.api_key_env})
        # Provider keys: the environment locally; SSM SecureStrings on Lambda, read lazily.
        self.keys = keys or key_source(self.key_names, settings=settings, http_client=self.client)
        self.store: Store = (
            open_store(settings.store_url, settings=settings, http_client=self.client)
            if store is None
            else under_deadline(store, settings.store_timeout_s)
        )
        self.redactor = secrets_redactor(settings, self.keys, self.key_names)
        self.breakers = breaker_health(self.store, self.rules) if health is None else None
        self.spend = SpendControls(self.store, self.rules, region=settings.region)
        self.forwarder = Forwarder(
            self.client,
            self.keys,
            health or self.breakers,
            max_sse_line=settings.max_sse_line_bytes,
            redactor=self.redactor,
            max_attempts=self.rules.spec.routing.max_attempts,
            deadline_s=self.rules.spec.routing.deadline_s,
        )
        self.body_limits = BodyLimits.of(settings)
        self.disconnects = DisconnectWatch(WATCH_AFTER_S)
        self.access_log = AccessLog(
            enabled=settings.log_requests, emf=settings.emf_metrics, buffered=settings.background_settle
        )
        drainer = Drainer()
        if self.access_log.emf:  # OutputTokensVsLastWeek: each model's baseline, loaded once a day
            self.access_log.baseline = Baseline(self.spend.ledger, start=drainer.start)
        self.tracing = start_tracing(settings, span_processor)
        self.quality = QualityLoop()
        self.quality.facts = Facts.build(self.store, self.rules.spec.quality)  # None: feedback off
        judging = judging_of(self, drainer)
        if judging is not None:  # on Lambda: judged in an asynchronous invocation of this function
            judging.dispatch = lambda_dispatch(settings, self.client) or judging.dispatch
        self.quality.judging = judging
        self.conversations = Conversations(self.store, self.rules)
        self.lifecycle = Lifecycle(
            self.spend,
            self.access_log,
            background=settings.background_settle,
            quality=self.quality,
            drainer=drainer,
            tracing=self.tracing,
            conversations=self.conversations,
        )
        watch = (  # before the first read, so a change in between is seen
            KeysFileWatch(settings.keys_file, base=plain_keys(settings.api_keys), tiers=self.rules.tiers)
            if settings.keys_file is not None and not settings.keys_ssm
            else None
        )
        self.auth = Auth(
            router_keyring(settings),
            require=settings.require_auth,
            loader=ssm_keys_loader(settings, self.client) if settings.keys_ssm else None,
            watch=watch,
            on_keys=self.spend.apply_keys,
        )
        self.spend.apply_keys(self.auth.keyring.records)
        listed = models_list(self.rules)
        self.models_body = dumps(listed)
        self.models_by_id = {entry["id"]: dumps(entry) for entry in listed["data"]}
        if self.breakers is not None:
            self.breakers.board.on_open = lambda key, change: self.access_log.event(
                "BreakerOpened", breaker=key, change=change
            )
        missing = self.keys.missing(self.key_names)
        if missing:
            log.warning("provider keys not set: %s (their models will be skipped)", ", ".join(missing))

    async def drain(self) -> None:
        """At shutdown (SIGTERM included): finish every pending settle, cancel the judgements
        still hanging after that (each settles, counts and logs itself), then flush the log."""
        await self.lifecycle.drainer.drain()
        if self.quality.judging is not None:
            await self.quality.judging.stop()
        self.access_log.flush()
        if self.tracing is not None:  # off the event loop: the export is blocking I/O
            await asyncio.to_thread(self.tracing.flush)


def judging_of(gateway: Gateway, drainer: Drainer) -> Judging | None:
    """Judging as the rules file configures it; its modules are imported only when it is on."""
    if Sampling.of(gateway.rules.spec) is None:
        return None
    from tier_router.quality.runner import Judging

    g = gateway
    return Judging.of(g.rules, g.store, g.forwarder, g.spend, g.access_log, drainer)


def start_tracing(settings: Settings, span_processor: Any = None) -> Tracing | None:
    """OpenTelemetry when TIER_ROUTER_OTEL=1 (or a span processor is given: tests), else None
    — and then not even `tier_router.tracing` is imported: the cold start stays as it was."""
    if not settings.otel and span_processor is None:
        return None
    from tier_router.tracing import start

    return start(settings, span_processor)


def secrets_redactor(settings: Settings, keys: KeySource, key_names: list[str]) -> Redactor:
    """Every secret this process holds in plain text, scrubbed from what it passes on and logs
    (`redaction`): the provider keys (and each set an SSM refresh brings), the router keys of
    TIER_ROUTER_API_KEYS, the AWS secret key and session token."""
    credentials = settings.aws_credentials()
    aws = (credentials.secret_key, credentials.token) if credentials is not None else ()
    redactor = Redactor([*keys.known(key_names), *plain_secrets(settings.api_keys), *aws])
    keys.on_change = lambda: redactor.add(keys.known(key_names))
    short = [n for n in key_names if any(len(v) < MIN_SECRET_CHARS for v in keys.known([n]))]
    if short:
        log.warning(
            "provider keys shorter than %d characters are not redacted from answers and logs: %s",
            MIN_SECRET_CHARS,
            ", ".join(short),
        )
    redact_logs(redactor)
    return redactor


def under_deadline(store: Store, timeout_s: float) -> Store:
    """A store handed in (tests, embedding): ours take the deadline themselves; anything else
    store-shaped is wrapped (validating twice would cost every request)."""
    if isinstance(store, Store) and not isinstance(store, DeadlineStore) and store.deadline_s is None:
        store.deadline_s = timeout_s
        return store
    return DeadlineStore(store, timeout_s)


def router_keyring(settings: Settings) -> KeyRing:
    keyring = KeyRing(plain_keys(settings.api_keys))
    if settings.keys_file is not None:
        text = settings.keys_file.read_text()
        keyring.replace([*keyring.records, *parse_keys(text, str(settings.keys_file))])
    return keyring


def ssm_keys_loader(settings: Settings, client: httpx.AsyncClient) -> KeysLoader:
    """Router keys from one SSM SecureString (the keys file's text), fetched on demand."""
    name = settings.keys_ssm or ""

    async def load() -> list[KeyRecord]:
        return parse_keys(await fetch_parameter(name, settings=settings, http_client=client), f"ssm:{name}")

    return load


def breaker_health(store: Store, rules: Rules) -> BreakerHealth | None:
    spec = rules.spec.breakers
    if not spec.enabled:
        return None
    config = BreakerConfig(
        failure_threshold=spec.failure_threshold,
        window_s=spec.window_s,
        recovery_s=spec.recovery_s,
        recovery_backoff=spec.recovery_backoff,
        recovery_max_s=spec.recovery_max_s,
        probe_lease_s=max(spec.recovery_s, 30.0),
        cache_ttl_s=spec.cache_ttl_s,
    )
    return BreakerHealth(BreakerBoard(store, config))


def models_list(rules: Rules) -> dict[str, Any]:
    names = ["auto", *rules.tiers, *rules.routes, *rules.spec.aliases]
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "tier-router"} for name in names],
    }
