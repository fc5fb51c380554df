"""Settings from the environment, read once at start-up (never per request)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_RULES = Path("rules/router.yaml")
PACKAGED_RULES = Path(__file__).resolve().parent.parent / "rules" / "router.yaml"
DEFAULT_STORE = "sqlite:///.tier-router/state.db"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


def default_rules_path(environ: Mapping[str, str] | None = None) -> Path:
    """`TIER_ROUTER_RULES`, else `rules/router.yaml` in the working directory, else the packaged one."""
    environ = os.environ if environ is None else environ
    configured = environ.get("TIER_ROUTER_RULES")
    if configured:
        return Path(configured)
    if DEFAULT_RULES.exists():
        return DEFAULT_RULES
    return PACKAGED_RULES


@dataclass(frozen=True)
class Settings:
    rules_path: Path
    store_url: str = "memory://"
    """`from_env` defaults to the local SQLite file; built directly (tests), to memory."""
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """Router keys clients must present (`Authorization: Bearer ...`). Empty: no auth (local use)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    store_timeout_s: float = 1.0
    """Deadline for any one state-store call; past it the store counts as unavailable."""
    log_requests: bool = True
    keys_file: Path | None = None
    """A router keys file (hashes only), see `router_keys`."""
    keys_ssm: str | None = None
    """An SSM SecureString parameter holding the keys file (Lambda)."""
    secrets_ssm_prefix: str | None = None
    """Provider keys are read from SSM parameters `<prefix><ENV_VAR_NAME>` (Lambda)."""
    background_settle: bool = False
    """Settle spend and write the request line after the response, off the connection (local
    serving; never on Lambda)."""
    emf_metrics: bool = False
    """Add CloudWatch Embedded Metric Format to each request line (default on Lambda)."""
    require_auth: bool = False
    """Refuse every request when no router keys are configured (fail closed). On for Lambda."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        keys = tuple(k.strip() for k in environ.get("TIER_ROUTER_API_KEYS", "").split(",") if k.strip())
        return cls(
            rules_path=default_rules_path(environ),
            store_url=environ.get("TIER_ROUTER_STORE", DEFAULT_STORE),
            api_keys=keys,
            max_body_bytes=int(environ.get("TIER_ROUTER_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            store_timeout_s=float(environ.get("TIER_ROUTER_STORE_TIMEOUT_S", "1.0")),
            log_requests=environ.get("TIER_ROUTER_LOG_REQUESTS", "1") not in ("0", "false", "no"),
            keys_file=Path(environ["TIER_ROUTER_KEYS_FILE"])
            if environ.get("TIER_ROUTER_KEYS_FILE")
            else None,
            keys_ssm=environ.get("TIER_ROUTER_KEYS_SSM") or None,
            background_settle=environ.get("TIER_ROUTER_BACKGROUND_SETTLE", "0") in ("1", "true", "yes"),
            secrets_ssm_prefix=environ.get("TIER_ROUTER_SECRETS_SSM_PREFIX") or None,
            emf_metrics=environ.get(
                "TIER_ROUTER_EMF", "1" if environ.get("AWS_LAMBDA_FUNCTION_NAME") else "0"
            )
            in ("1", "true", "yes"),
            require_auth=bool(environ.get("AWS_LAMBDA_FUNCTION_NAME"))
            or environ.get("TIER_ROUTER_REQUIRE_AUTH", "") in ("1", "true", "yes"),
        )
