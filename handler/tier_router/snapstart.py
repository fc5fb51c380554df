"""Lambda SnapStart restore hooks (template.yaml's `SnapStart=On`, docs/regions.md "SnapStart").

With SnapStart, Lambda runs the init phase once per published version, snapshots the memory
and restores that one snapshot into every new execution environment. Whatever init made that
must differ between environments, or that does not survive a freeze of minutes to days, is
re-created after each restore:

- the shared httpx client's pooled connections (providers, DynamoDB, SSM all use it): its pool
  (`Gateway.transport`) is emptied, the next request opens fresh connections (the snapshot's
  sockets are dead or, worse, shared by every restored copy);
- request-id seeds and counters: `lifecycle`'s fallback id prefix and counter, the spend holds'
  process tag and sequence (`Holds.reseed`). Two environments restored from one snapshot would
  otherwise issue the same ids and hold names (the breaker board's lease tokens draw a uuid4
  each: already unique);
- random state: the `random` module and the forwarder's jitter `Random`, reseeded from
  `os.urandom` (a snapshot would replay the same draws in every environment);
- secrets with an expiry: the SSM provider-key cache is marked stale (`SSMKeySource.mark_stale`),
  so the first request after a restore refreshes it in the background (served from cache
  meanwhile). AWS credentials are not cached by the router (`aws.client` reads them on every
  call; Lambda supplies fresh ones after a restore), so there is nothing to drop.

- OpenTelemetry's exporter (`TIER_ROUTER_OTEL=1`): a new provider, exporter (HTTP session),
  batch queue and worker thread (`Tracing.renew`); the old one is shut down in the background.

Before the snapshot, spans still queued are exported (`Tracing.flush`, bounded): otherwise
every environment restored from the snapshot would export them again. Nothing else: init
caches no secret (provider keys and the router keys file are read lazily, on the first
request, which comes after the restore).

`snapshot_restore_py` exists only in Lambda's managed Python runtime; `register` imports it
guardedly and does nothing elsewhere. `lambda_entry` imports this module only when that import
succeeds, so the local and non-Lambda import paths are unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
from types import ModuleType
from typing import Any

from tier_router import lifecycle

log = logging.getLogger("tier_router")


def register(app: Any, runtime: ModuleType) -> None:
    """Register the hooks with `snapshot_restore_py` (`runtime`) for this app."""
    runtime.register_before_snapshot(before_snapshot, app)
    runtime.register_after_restore(after_restore, app)


def before_snapshot(app: Any) -> None:
    """Export the queued spans, once, before they are copied into every restored environment.
    No secret to drop: init leaves none with an expiry in memory (module doc). Never raises."""
    tracing = getattr(app.gateway, "tracing", None)
    if tracing is not None:
        try:
            tracing.flush()
        except Exception:
            log.exception("snapstart: exporting spans before the snapshot failed")
    log.info("snapstart: snapshot taken after init")


def after_restore(app: Any) -> None:
    """Re-create what restored environments must not share (module doc). Never raises: a
    failed hook fails the restore, and each step below only improves on a working default."""
    for step in (reseed_random, reseed_ids, expire_secrets, reopen_connections, renew_tracing):
        try:
            step(app.gateway)
        except Exception:
            log.exception("snapstart: after-restore step %s failed", step.__name__)


def reseed_random(gateway: Any) -> None:
    random.seed(os.urandom(32))
    forwarder = getattr(gateway, "forwarder", None)
    if forwarder is not None and isinstance(getattr(forwarder, "rng", None), random.Random):
        forwarder.rng.seed(os.urandom(32))


def reseed_ids(gateway: Any) -> None:
    """New id prefixes and counters wherever init drew them once per process."""
    lifecycle.REQUEST_ID_PREFIX = os.urandom(6).hex()
    lifecycle.REQUEST_COUNTER = itertools.count(1)
    guard = getattr(getattr(gateway, "spend", None), "guard", None)
    holds = getattr(guard, "holds", None)
    if holds is not None:
        holds.reseed()


def expire_secrets(gateway: Any) -> None:
    """The SSM key cache counts as stale: refreshed in the background on first use."""
    from tier_router.aws.ssm import SSMKeySource

    keys = getattr(gateway, "keys", None)
    if isinstance(keys, SSMKeySource):
        keys.mark_stale()


def reopen_connections(gateway: Any) -> None:
    """Empty the shared client's connection pool (`Gateway.transport`; the client stays usable:
    the pool opens new connections on the next request). Runs on Mangum's loop, idle between
    invocations."""
    transport = getattr(gateway, "transport", None)
    if transport is not None:
        asyncio.get_event_loop().run_until_complete(transport.aclose())


def renew_tracing(gateway: Any) -> None:
    """A new span exporter, batch thread and HTTP session (`Tracing.renew`), when tracing is on."""
    tracing = getattr(gateway, "tracing", None)
    if tracing is not None:
        tracing.renew()
