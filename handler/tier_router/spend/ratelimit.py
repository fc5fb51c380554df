"""Per router key rate limits: requests and tokens per minute, shared through the store.

Fixed one-minute windows (aligned to the epoch minute): item `rl:<key id>:<minute>`
holds {"requests", "tokens"}; each check is ONE `store.add` of {requests: 1, tokens: n}
under `limits` — so the count and the verdict are atomic across every copy of the
gateway — and the item expires two minutes after its window starts. A refused add
changes nothing; one extra read then fills the 429's headers.

Why fixed windows: one write per request and no clock coordination. The price is the
usual edge burst (up to 2× the limit across a window boundary), acceptable for a gateway
whose providers enforce their own limits anyway.

`tokens` is the caller's estimate made BEFORE the request (prompt estimate + max_tokens,
as OpenAI's own limiter counts); it is not corrected with the real usage afterwards.
A request larger than the whole per-minute token limit can never pass: it is refused at
once with `too_large=True` (OpenAI answers 429 "Request too large" for the same case).

Headers follow OpenAI's: x-ratelimit-{limit,remaining,reset}-{requests,tokens}, reset as
"12s" / "250ms" (time until the window rolls over), only for the limits that apply.
When the store fails, requests are allowed (logged once per outage).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from tier_router.outage import Outage
from tier_router.store.base import Store, StoreError

if TYPE_CHECKING:
    from tier_router.schema import RateLimitConfig

logger = logging.getLogger(__name__)

WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class Allowed:
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Limited:
    """Answer HTTP 429 with `headers` (which include `retry-after`)."""

    retry_after_s: int
    headers: dict[str, str]
    limit: Literal["requests", "tokens"]
    limit_value: int
    too_large: bool = False  # the request alone exceeds the per-minute token limit

    @property
    def message(self) -> str:
        if self.too_large:
            return (
                f"Request too large: it needs about {self.headers.get('x-router-requested-tokens')} tokens, "
                f"more than this key's limit of {self.limit_value} tokens per minute. "
                "Send fewer messages or a lower max_tokens."
            )
        return (
            f"Rate limit reached: {self.limit_value} {self.limit} per minute for this key. "
            f"Try again in {self.retry_after_s}s."
        )


def format_reset(seconds: float) -> str:
    """OpenAI's style: "250ms" below a second, else whole seconds rounded up ("12s")."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 1)}ms"
    return f"{math.ceil(seconds)}s"


@dataclass(eq=False)
class RateLimiter:
    """One per process; share it across requests."""

    store: Store
    config: RateLimitConfig
    clock: Callable[[], float] = field(default=time.time, kw_only=True)
    key_prefix: str = field(default="rl:", kw_only=True)

    def __post_init__(self) -> None:
        self._outage = Outage(logger, "rate-limit", "allowing requests")

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def _item(self, router_key: str, minute: int) -> str:
        return f"{self.key_prefix}{quote(router_key, safe='')}:{minute}"

    async def check(self, router_key: str, tokens: int) -> Allowed | Limited:
        """Count one request of ~`tokens` tokens for `router_key`, unless that breaks a limit."""
        rpm, tpm = self.config.for_key(router_key)
        if rpm is None and tpm is None:
            return Allowed()
        tokens = max(int(tokens), 1)  # ≥1: a zero add is not portable across stores (see holds.nonzero)
        now = self.clock()
        minute = math.floor(now / WINDOW_S)
        reset_s = (minute + 1) * WINDOW_S - now
        retry_after = max(math.ceil(reset_s), 1)
        if tpm is not None and tokens > tpm:
            headers = _headers(rpm, tpm, None, None, reset_s)
            headers.update({"retry-after": str(retry_after), "x-router-requested-tokens": str(tokens)})
            return Limited(retry_after, headers, "tokens", tpm, too_large=True)

        item = self._item(router_key, minute)
        expires = (minute + 2) * WINDOW_S
        limits = {name: limit for name, limit in (("requests", rpm), ("tokens", tpm)) if limit is not None}
        try:
            new = await self.store.add(
                item, {"requests": 1, "tokens": tokens}, expires_at=expires, limits=limits
            )
            if new is not None:
                self._outage.ok()
                headers = _headers(rpm, tpm, new["requests"], new["tokens"], reset_s)
                return Allowed(headers)
            current = await self.store.get(item) or {}
        except StoreError as exc:
            self._outage.failed("check", exc)
            return Allowed()
        used_requests = _int(current.get("requests"))
        used_tokens = _int(current.get("tokens"))
        which: Literal["requests", "tokens"] = (
            "requests" if rpm is not None and used_requests + 1 > rpm else "tokens"
        )
        headers = _headers(rpm, tpm, used_requests, used_tokens, reset_s)
        headers["retry-after"] = str(retry_after)
        limit_value = rpm if which == "requests" else tpm
        return Limited(retry_after, headers, which, limit_value or 0)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _headers(
    rpm: int | None, tpm: int | None, used_requests: int | None, used_tokens: int | None, reset_s: float
) -> dict[str, str]:
    """OpenAI-style headers for the limits that apply; `used_*` None = unknown (full)."""
    headers: dict[str, str] = {}
    reset = format_reset(reset_s)
    for kind, limit, used in (("requests", rpm, used_requests), ("tokens", tpm, used_tokens)):
        if limit is None:
            continue
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(limit - (used or 0), 0))
        headers[f"x-ratelimit-reset-{kind}"] = reset
    return headers
