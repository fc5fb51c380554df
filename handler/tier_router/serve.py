"""`tier-router serve`: the router under uvicorn, on settings handed over explicitly.

The settings are `Settings.from_env(serve=True)` with the command's flags on top; the app is
built from them (`create_app(settings)`), never from a rewritten environment. With one
worker uvicorn serves that app object. With several, uvicorn imports the app in each worker
process, so it runs `worker_app` (factory mode), which rebuilds the parent's settings from
the serialized copy the parent left for it (`Settings.export_to_workers`).

Serving on a network address without router keys is refused unless `--insecure-no-auth`:
anyone who can reach the port could spend the provider keys. Fail closed: a key source that
is configured but holds no key (`TIER_ROUTER_API_KEYS=","`, a keys file with `keys: []`
after the last key was revoked) is refused the same way, with a message naming the source,
and a network address always serves with `require_auth` (a source that empties later, such
as an SSM parameter refreshed every 5 minutes, refuses requests with 401 instead of opening).
Loopback (127.0.0.1, ::1, localhost) serves without keys for local use, with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tier_router.settings import Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from tier_router.routing.engine import Rules

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def serve_settings(rules: Path | None, store: str | None) -> Settings:
    """The environment's settings with `serve`'s defaults, and the flags on top."""
    settings = Settings.from_env(serve=True)
    return dataclasses.replace(
        settings, rules_path=rules or settings.rules_path, store_url=store or settings.store_url
    )


def key_sources(settings: Settings) -> list[str]:
    """The router key sources configured, as the user named them (empty or not)."""
    sources = []
    if settings.api_keys or settings.api_keys_set:
        sources.append("TIER_ROUTER_API_KEYS")
    if settings.keys_file is not None:
        sources.append(f"TIER_ROUTER_KEYS_FILE ({settings.keys_file})")
    if settings.keys_ssm:
        sources.append(f"TIER_ROUTER_KEYS_SSM ({settings.keys_ssm})")
    return sources


def has_router_keys(settings: Settings) -> bool:
    """At least one router key is loaded: the keys themselves are counted, not the variables
    that name their source. An SSM source counts as configured (its keys are fetched on first
    use; empty, every request is refused: a network address serves with `require_auth`).
    Raises `OSError` / `KeysError` when the keys file cannot be read."""
    from tier_router.gateway import router_keyring

    return bool(settings.keys_ssm) or bool(router_keyring(settings))


def _sources(sources: list[str]) -> str:
    if len(sources) == 1:
        return f"the router key source {sources[0]} holds"
    return f"the router key sources {', '.join(sources[:-1])} and {sources[-1]} hold"


def exposure_problem(settings: Settings, host: str, insecure_no_auth: bool) -> str | None:
    """Why serving `settings` on `host` is refused: the keys file cannot be read (anywhere),
    or a network address without a router key (no source, or configured sources all empty)."""
    from tier_router.router_keys import KeysError

    try:
        keyed = has_router_keys(settings)
    except (OSError, KeysError) as exc:
        return f"refusing to serve: cannot read the router keys file: {exc}"
    if keyed or host in LOOPBACK or insecure_no_auth:
        return None
    sources = key_sources(settings)
    if sources:
        return (
            f"refusing to serve on {host}: {_sources(sources)} no keys (fail closed; was the last"
            " key revoked?). Create one with `tier-router keys create NAME`, or pass --insecure-no-auth"
        )
    return (
        f"refusing to serve on {host} without router keys: create one with"
        " `tier-router keys create NAME` and set TIER_ROUTER_KEYS_FILE, or pass --insecure-no-auth"
    )


def keys_tier_problem(settings: Settings, rules: Rules) -> str | None:
    """A router key limited to a tier the rules file does not define: refused at start (at
    request time such a key would only ever get 403s), naming the key and the tier."""
    from tier_router.gateway import router_keyring
    from tier_router.router_keys import unknown_tier_problem

    problem = unknown_tier_problem(router_keyring(settings).records, rules.tiers)
    return f"refusing to serve: {settings.keys_file}: {problem} in {settings.rules_path}" if problem else None


def serve(
    settings: Settings,
    rules: Rules,
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    insecure_no_auth: bool,
) -> int:
    """Run until stopped; the exit status (2: refused). The caller has checked the rules
    (`rules`, loaded from `settings.rules_path`) and the store URL."""
    import uvicorn

    from tier_router.banner import banner
    from tier_router.gateway import router_keyring
    from tier_router.tracing import unavailable

    problem = (
        exposure_problem(settings, host, insecure_no_auth)
        or unavailable(settings)
        or keys_tier_problem(settings, rules)
    )
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if host not in LOOPBACK and not insecure_no_auth:  # keys that empty later: 401, never open
        settings = dataclasses.replace(settings, require_auth=True)
    keys = len(router_keyring(settings).records)
    sources = key_sources(settings)
    print(
        banner(settings, rules, host=host, port=port, workers=workers, keys=keys, sources=sources),
        file=sys.stderr,
    )
    logging.basicConfig(level=log_level.upper(), format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise
    app: Starlette | str
    if workers > 1:  # uvicorn imports the app in each worker process: hand it the settings
        settings.export_to_workers()
        app = f"{__name__}:worker_app"
    else:
        from tier_router.app import create_app

        app = create_app(settings, rules=rules)
    uvicorn.run(
        app,
        factory=isinstance(app, str),
        host=host,
        port=port,
        workers=workers,
        http="httptools",
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        lifespan="on",  # shutdown (SIGTERM, Ctrl-C) drains pending settles and flushes the log
        access_log=False,
        log_level=log_level,
        # Longer than clients' keep-alive expiry (the OpenAI SDK's httpx: 5 s). With uvicorn's
        # default of 5 s, a client can reuse a connection just as the server closes it.
        timeout_keep_alive=75,
    )
    return 0


def worker_app() -> Starlette:
    """The app of one `serve --workers N` worker process, on the parent's settings."""
    from tier_router.app import create_app

    return create_app(Settings.from_exported())
