"""Settings from the environment: the one module that reads it.

Everything configurable is a field of `Settings`, read once at start-up by `from_env` (never
per request) and handed to whatever needs it: the store factory, the provider key source,
the AWS clients, the CLI. Two things are looked up later, in `Settings.environ`, because
they are not settings but secrets that live in the environment: provider keys (named by the
rules file) and AWS credentials (re-read on every AWS call because Lambda rotates them).

`tier-router serve --workers N` hands its Settings to worker processes serialized in one
variable (`export_to_workers` / `from_exported`), so a worker runs with exactly the parent's
settings, CLI flags included.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tier_router.aws.sigv4 import Credentials

DEFAULT_RULES = Path("rules/router.yaml")
PACKAGED_RULES = Path(__file__).resolve().parent.parent / "rules" / "router.yaml"
DEFAULT_STORE = "sqlite:///.tier-router/state.db"
"""The store when TIER_ROUTER_STORE is not set: a SQLite file shared by local processes."""
DEFAULT_KEYS_FILE = Path(".tier-router/keys.yaml")
"""Where `tier-router keys create` writes by default: beside the local store, ignored by git and
outside `rules/` (which the Lambda artifact packages; its build excludes any keys.yaml too)."""
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_MAX_JSON_VALUES = 200_000
DEFAULT_MAX_JSON_DEPTH = 128
DEFAULT_MAX_SSE_LINE_BYTES = 4 * 1024 * 1024
WORKERS_ENV = "TIER_ROUTER_SERVE_SETTINGS"
"""Where `export_to_workers` puts the serialized settings for `serve --workers N`."""

DEFAULT_OTEL_SERVICE_NAME = "tier-router"

_TRUE = ("1", "true", "yes")


def default_rules_path(environ: Mapping[str, str] | None = None) -> Path:
    """`TIER_ROUTER_RULES`, else `rules/router.yaml` in the working directory, else the packaged one."""
    environ = os.environ if environ is None else environ
    configured = environ.get("TIER_ROUTER_RULES")
    if configured:
        return Path(configured)
    if DEFAULT_RULES.exists():
        return DEFAULT_RULES
    return PACKAGED_RULES


def configured_store_url(environ: Mapping[str, str] | None = None) -> str | None:
    """`TIER_ROUTER_STORE` when set (`tier-router explain` reads breakers only then)."""
    environ = os.environ if environ is None else environ
    return environ.get("TIER_ROUTER_STORE") or None


def environment_credentials(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """AWS credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`
    (what Lambda sets, and rotates: call this per request, never cache it); None if unset."""
    from tier_router.aws.sigv4 import Credentials  # here: the signer is loaded only when AWS is used

    env = os.environ if environ is None else environ
    access_key = env.get("AWS_ACCESS_KEY_ID")
    secret_key = env.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        return None
    return Credentials(access_key, secret_key, env.get("AWS_SESSION_TOKEN") or None)


def otlp_traces_endpoint(environ: Mapping[str, str]) -> str | None:
    """The OTLP/HTTP traces URL the standard variables name (the SDK's own rule), or None."""
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return f"{base.rstrip('/')}/v1/traces" if base else None


def _process_environ() -> Mapping[str, str]:
    return os.environ


@dataclass(frozen=True)
class Settings:
    rules_path: Path
    store_url: str = "memory://"
    """`from_env` defaults to the local SQLite file (`DEFAULT_STORE`); built directly (tests), to memory."""
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """Router keys clients must present (`Authorization: Bearer ...`). Empty: no auth (local use)."""
    api_keys_set: bool = False
    """TIER_ROUTER_API_KEYS is set (to anything but ""), even when it holds no key (`","`, spaces):
    a configured source that is empty, which `serve` refuses on a network address."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    """The whole request body must arrive within this many seconds of the request (408 and the
    connection closed otherwise): one deadline, so a body trickled a byte at a time is cut too."""
    max_json_values: int = DEFAULT_MAX_JSON_VALUES
    """At most this many JSON values (objects, arrays, their elements) in a request body (413),
    checked before it is parsed: parsed, `[{},{},…]` weighs ~30 times its bytes."""
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    """At most this deep a nesting of JSON objects and arrays in a request body (400)."""
    max_sse_line_bytes: int = DEFAULT_MAX_SSE_LINE_BYTES
    """A provider's stream may not send a line, or an event's data, longer than this: past it
    the stream counts as broken (an upstream protocol failure), not buffered further."""
    store_timeout_s: float = 1.0
    """Deadline for any one state-store call; past it the store counts as unavailable."""
    log_requests: bool = True
    keys_file: Path | None = None
    """A router keys file (hashes only), see `router_keys`."""
    keys_ssm: str | None = None
    """An SSM SecureString parameter holding the keys file (Lambda)."""
    secrets_ssm_prefix: str | None = None
    """Set: provider keys are the SSM parameters `<prefix><ENV_VAR_NAME>` (Lambda; see
    `aws.ssm.key_source`). Unset: provider keys come from `environ`."""
    background_settle: bool = False
    """Settle spend and write the request line after the response, off the connection (local
    serving; never on Lambda)."""
    emf_metrics: bool = False
    """Add CloudWatch Embedded Metric Format to each request line (default on Lambda)."""
    require_auth: bool = False
    """Refuse every request when no router keys are configured (fail closed). On for Lambda."""
    aws_region: str | None = None
    """`AWS_REGION`, else `AWS_DEFAULT_REGION` (Lambda sets both). A URL's `?region=` wins."""
    region: str | None = None
    """Where this router runs: `TIER_ROUTER_REGION`, else `AWS_REGION` (which Lambda sets; not
    `AWS_DEFAULT_REGION`, a client default). Its share of each budget cap (`budgets.region_shares`)
    and, on a shared store, its items' namespace (docs/regions.md)."""
    shared_store: bool = False
    """`TIER_ROUTER_SHARED_STORE=1` (template.yaml sets it with a global table): routers in several
    regions share the state store, so each keeps its own items (`store.regional`)."""
    aws_endpoint_url: str | None = None
    """`AWS_ENDPOINT_URL`: every AWS service at one endpoint (LocalStack, moto)."""
    dynamodb_endpoint_url: str | None = None
    """`AWS_ENDPOINT_URL_DYNAMODB` (botocore's name): DynamoDB Local, moto."""
    ssm_endpoint_url: str | None = None
    """`AWS_ENDPOINT_URL_SSM`."""
    lambda_endpoint_url: str | None = None
    """`AWS_ENDPOINT_URL_LAMBDA`: the Lambda API (a local fake in tests)."""
    lambda_function_name: str | None = None
    """`AWS_LAMBDA_FUNCTION_NAME`: set by Lambda, so the process runs on Lambda; a sampled
    request's judgement is then an asynchronous invocation of this function (`aws.invoke`)."""
    lambda_web_adapter: bool = False
    """`TIER_ROUTER_STREAMING=lwa` (template.yaml): uvicorn behind the Lambda Web Adapter, which
    forwards HTTP events only, so judge events are not sent to it."""
    otel: bool = False
    """`TIER_ROUTER_OTEL=1`: OpenTelemetry traces, a span per request and per provider attempt
    (`tier_router.tracing`; needs the `otel` extra). Off, nothing of OpenTelemetry is imported.
    `OTEL_SDK_DISABLED=true` turns it off again. The other standard `OTEL_*` variables (headers,
    timeout, sampler, resource attributes) are read by the OpenTelemetry SDK itself."""
    otel_service_name: str = DEFAULT_OTEL_SERVICE_NAME
    """`OTEL_SERVICE_NAME`, else "tier-router": the `service.name` of the router's spans."""
    otel_endpoint: str | None = None
    """Where spans are posted (OTLP/HTTP): `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else
    `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`; None: the SDK's default (localhost:4318)."""
    environ: Mapping[str, str] = field(default_factory=_process_environ, repr=False, compare=False)
    """Where provider keys and AWS credentials are looked up, when they are needed (a live
    mapping: the process environment unless `from_env` was given another)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, serve: bool = False) -> Settings:
        """Read every setting. `serve=True`: the defaults of `tier-router serve` (settle in the
        background unless TIER_ROUTER_BACKGROUND_SETTLE says otherwise)."""
        environ = os.environ if environ is None else environ
        keys = tuple(k.strip() for k in environ.get("TIER_ROUTER_API_KEYS", "").split(",") if k.strip())
        lambda_ = bool(environ.get("AWS_LAMBDA_FUNCTION_NAME"))
        return cls(
            rules_path=default_rules_path(environ),
            store_url=configured_store_url(environ) or DEFAULT_STORE,
            api_keys=keys,
            api_keys_set=bool(environ.get("TIER_ROUTER_API_KEYS")),
            max_body_bytes=int(environ.get("TIER_ROUTER_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            body_timeout_s=float(environ.get("TIER_ROUTER_BODY_TIMEOUT_S", DEFAULT_BODY_TIMEOUT_S)),
            max_json_values=int(environ.get("TIER_ROUTER_MAX_JSON_VALUES", DEFAULT_MAX_JSON_VALUES)),
            max_json_depth=int(environ.get("TIER_ROUTER_MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH)),
            max_sse_line_bytes=int(environ.get("TIER_ROUTER_MAX_SSE_LINE_BYTES", DEFAULT_MAX_SSE_LINE_BYTES)),
            store_timeout_s=float(environ.get("TIER_ROUTER_STORE_TIMEOUT_S", "1.0")),
            log_requests=environ.get("TIER_ROUTER_LOG_REQUESTS", "1") not in ("0", "false", "no"),
            keys_file=Path(environ["TIER_ROUTER_KEYS_FILE"])
            if environ.get("TIER_ROUTER_KEYS_FILE")
            else None,
            keys_ssm=environ.get("TIER_ROUTER_KEYS_SSM") or None,
            background_settle=environ.get("TIER_ROUTER_BACKGROUND_SETTLE", "1" if serve else "0") in _TRUE,
            secrets_ssm_prefix=environ.get("TIER_ROUTER_SECRETS_SSM_PREFIX") or None,
            emf_metrics=environ.get("TIER_ROUTER_EMF", "1" if lambda_ else "0") in _TRUE,
            require_auth=lambda_ or environ.get("TIER_ROUTER_REQUIRE_AUTH", "") in _TRUE,
            aws_region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None,
            region=environ.get("TIER_ROUTER_REGION") or environ.get("AWS_REGION") or None,
            shared_store=environ.get("TIER_ROUTER_SHARED_STORE", "").lower() in _TRUE,
            aws_endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
            dynamodb_endpoint_url=environ.get("AWS_ENDPOINT_URL_DYNAMODB") or None,
            ssm_endpoint_url=environ.get("AWS_ENDPOINT_URL_SSM") or None,
            lambda_endpoint_url=environ.get("AWS_ENDPOINT_URL_LAMBDA") or None,
            lambda_function_name=environ.get("AWS_LAMBDA_FUNCTION_NAME") or None,
            lambda_web_adapter=environ.get("TIER_ROUTER_STREAMING", "") == "lwa",
            otel=environ.get("TIER_ROUTER_OTEL", "").lower() in _TRUE
            and environ.get("OTEL_SDK_DISABLED", "").lower() != "true",
            otel_service_name=environ.get("OTEL_SERVICE_NAME") or DEFAULT_OTEL_SERVICE_NAME,
            otel_endpoint=otlp_traces_endpoint(environ),
            environ=environ,
        )

    # --- AWS ------------------------------------------------------------------------------

    def aws_endpoint(self, service: str) -> str | None:
        """The endpoint configured for `service` ("dynamodb", "ssm", "lambda"), else the one for
        all services, else None (the public AWS endpoint of the region)."""
        own = {
            "dynamodb": self.dynamodb_endpoint_url,
            "ssm": self.ssm_endpoint_url,
            "lambda": self.lambda_endpoint_url,
        }.get(service)
        return own or self.aws_endpoint_url

    @property
    def judges_by_invocation(self) -> bool:
        """On Lambda behind Mangum: a sample is judged in an asynchronous invocation of this
        function, not in a task the frozen container would stall."""
        return bool(self.lambda_function_name) and not self.lambda_web_adapter

    def aws_credentials(self) -> Credentials | None:
        """The current AWS credentials in `environ` (call per request: Lambda rotates them)."""
        return environment_credentials(self.environ)

    # --- serve --workers N ----------------------------------------------------------------

    def export_to_workers(self) -> None:
        """Put these settings where `from_exported` finds them in worker processes (which
        inherit the environment, so `environ` itself is not serialized)."""
        os.environ[WORKERS_ENV] = self.to_json()

    @classmethod
    def from_exported(cls) -> Settings:
        """The settings `export_to_workers` left for this worker process."""
        return cls.from_json(os.environ[WORKERS_ENV])

    def to_json(self) -> str:
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "environ":
                continue
            data[f.name] = str(value) if isinstance(value, Path) else value
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str, environ: Mapping[str, str] | None = None) -> Settings:
        data = json.loads(text)
        data["rules_path"] = Path(data["rules_path"]) if data.get("rules_path") is not None else None
        data["keys_file"] = Path(data["keys_file"]) if data.get("keys_file") else None
        data["api_keys"] = tuple(data.get("api_keys") or ())
        return cls(**data, environ=os.environ if environ is None else environ)
