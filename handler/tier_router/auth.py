"""Who is calling: router keys (plain, a keys file of hashes, or SSM), and what a key may use.

Keys are matched in constant time by `router_keys.KeyRing`. A key's name goes to logs and
counters; the key itself never does. Keys from SSM are loaded on first use and refreshed
every `KEYS_REFRESH_S`; a failed refresh keeps the previous set, so an SSM hiccup never
locks everyone out. A keys file is re-read when it changes (`router_keys.KeysFileWatch`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from tier_router.errors import APIError
from tier_router.router_keys import KeyRecord, KeyRing, KeysFileWatch
from tier_router.routing.engine import Decision, DecisionKind, Rules

log = logging.getLogger("tier_router")
KEYS_REFRESH_S = 300.0

KeysLoader = Callable[[], Awaitable[list[KeyRecord]]]


class Auth:
    """One per process. `on_keys` hears of every key set loaded (per-key budgets and limits)."""

    def __init__(
        self,
        keyring: KeyRing,
        *,
        require: bool,
        loader: KeysLoader | None = None,
        watch: KeysFileWatch | None = None,
        on_keys: Callable[[list[KeyRecord]], None] = lambda records: None,
    ) -> None:
        self.keyring = keyring
        self.require = require
        self.loader = loader
        self.watch = watch
        self.on_keys = on_keys
        self._loaded_at = 0.0
        if not keyring and loader is None and require:  # open (no keys, not required): said by
            # `serve`'s start-up banner, or `asgi` for `uvicorn tier_router.asgi:app`: once, not per worker
            log.error("no router keys are configured: every request will be refused (fail closed)")

    @property
    def configured(self) -> bool:
        return bool(self.keyring)

    async def authenticate(self, authorization: str) -> KeyRecord | None:
        """The caller's key record, or None when the router runs without keys (local use)."""
        if self.loader is not None:
            await self.refresh()
        if self.watch is not None:
            changed = await self.watch.poll()
            if changed is not None:
                self.keyring.replace(changed)
                self.on_keys(changed)
        if not self.keyring:
            if self.require:
                raise APIError(
                    401,
                    "This router has no keys configured and refuses every request.",
                    code="no_keys_configured",
                )
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        record = self.keyring.match(token) if scheme.lower() == "bearer" and token else None
        if record is None:
            raise APIError(
                401,
                "Incorrect or missing API key. Send the router key as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        return record

    async def refresh(self) -> None:
        """Load (or refresh, every KEYS_REFRESH_S) keys from their remote source."""
        now = time.monotonic()
        if self.loader is None or (self._loaded_at and now - self._loaded_at < KEYS_REFRESH_S):
            return
        self._loaded_at = now
        try:
            records = await self.loader()
        except Exception as exc:  # any failure: keep serving with what we have
            log.warning("router keys could not be loaded: %s", exc)
            if not self.keyring:
                self._loaded_at = now - KEYS_REFRESH_S + 5  # retry soon when we have nothing
            return
        self.keyring.replace(records)
        self.on_keys(records)


def check_tier(rules: Rules, record: KeyRecord | None, decision: Decision) -> Decision:
    """Keys limited to some tiers: a request naming another tier is refused; a routed one
    moves to the first tier the key allows."""
    if record is None or not record.tiers or decision.tier in record.tiers:
        return decision
    if decision.kind is DecisionKind.EXPLICIT:
        raise APIError(
            403,
            f"Router key {record.name!r} may not use {decision.requested_model!r}; "
            f"allowed tiers: {', '.join(record.tiers)}.",
            code="tier_not_allowed",
            param="model",
        )
    allowed = next((t for t in record.tiers if t in rules.tiers and rules.same_kind(t, decision.tier)), None)
    if allowed is None:
        raise APIError(403, f"Router key {record.name!r} allows no existing tier.", code="tier_not_allowed")
    return rules.retier(decision, allowed, f"key {record.name!r} allows only {', '.join(record.tiers)}")
