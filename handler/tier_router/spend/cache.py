"""Exact-match response cache for deterministic, non-streamed chat completions.

Why exact match only: a semantic cache needs embeddings and a vector index, and a wrong
hit is a wrong answer. An exact repeat of a `temperature: 0` request (evals, retries,
idempotent batch jobs) is common and safe to serve from the store.

What is cacheable (`is_cacheable`): not streamed, AND either `temperature` is exactly 0
(explicit — absent means the provider default, 1.0 at OpenAI, so not deterministic) or the
caller opted in with the header (`x-router-cache: on`); `x-router-cache: off` always
bypasses. Only complete answers are stored (`should_store`: every choice finished with
`stop`/`tool_calls`; truncated or filtered ones are not).

The key (`cache_key`) is the SHA-256 of a normalized JSON of the body:
- keys sorted, no whitespace, integral floats written as ints (`0.0` == `0`);
- `model` replaced by the models the request may be served by: the decision's candidate
  chain in order, each as `name=provider/upstream id` (admission builds it). Two models of
  one tier, a model named explicitly and its tier, or one name whose upstream model the
  rules file changed, are different keys, so no request is answered with another model's
  answer; `auto` and `premium` resolved to the same chain share entries;
- dropped, because they are transport or bookkeeping and do not change the answer:
  `stream`, `stream_options`, `user`, `safety_identifier`, `metadata`, `store`,
  `service_tier`, `prompt_cache_key`;
- kept: every other field, known or not (anything we do not know may change the answer),
  including `messages`, `n` (it changes the response's shape), `seed`, `max_tokens`,
  `max_completion_tokens`, `temperature`, `top_p`, `stop`, `tools`, `tool_choice`,
  `response_format`, `logprobs`, `reasoning_effort`;
- `scope` (the router key id unless `cache.scope: global`) is part of the hash, so one
  tenant cannot probe another's prompts through hit latency.

Storage: item `cache:<hex>` = {"v": 1, "z": base64(zlib(JSON))}, with the TTL as the
item's expiry (every store hides expired items). Entries larger than `max_item_bytes`
after compression are skipped (DynamoDB's item limit is 400 KB). The cache is best
effort: store errors are logged and read as misses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tier_router.outage import Outage
from tier_router.store.base import Store, StoreError

logger = logging.getLogger(__name__)

IGNORED_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
    }
)
STORABLE_FINISH = frozenset({"stop", "tool_calls", "function_call"})
FORMAT_VERSION = 1
_ITEM_OVERHEAD = 200  # key, field names, expiry: bytes beyond the payload
_OFFLOAD_BYTES = 64_000  # compress bigger payloads on a worker thread (keeps the loop free)


def _normalize(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalize(v) for v in value]
    return value


def cache_key(body: Mapping[str, Any], chain: str | Sequence[str], *, scope: str = "") -> str:
    """The cache key of a request that may be served by the models of `chain`, in order (see
    the module docstring; one string is a chain of one)."""
    normalized = {k: _normalize(v) for k, v in body.items() if k not in IGNORED_FIELDS}
    normalized["model"] = [chain] if isinstance(chain, str) else [str(m) for m in chain]
    payload = json.dumps(
        [FORMAT_VERSION, scope, normalized], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def header_opt_in(value: str | None) -> bool | None:
    """The cache header's verdict: True (on), False (off), None (absent or unrecognized)."""
    if value is None:
        return None
    value = value.strip().lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no", "no-store", "bypass"):
        return False
    return None


def is_cacheable(body: Mapping[str, Any], *, opt_in: bool | None = None) -> bool:
    """Streamed: never. `opt_in` False/True (the header) decides; else only temperature 0."""
    if body.get("stream") or opt_in is False:
        return False
    if opt_in:
        return True
    temperature = body.get("temperature")
    return isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0


def should_store(completion: Mapping[str, Any]) -> bool:
    """Only whole answers: at least one choice and every one finished normally."""
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    return all(isinstance(c, Mapping) and c.get("finish_reason") in STORABLE_FINISH for c in choices)


def _encode(completion: Mapping[str, Any]) -> str:
    raw = json.dumps(completion, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def _decode(blob: str) -> dict[str, Any]:
    data = json.loads(zlib.decompress(base64.b64decode(blob, validate=True)).decode("utf-8", "surrogatepass"))
    if not isinstance(data, dict):
        raise ValueError("cached value is not a JSON object")
    return data


@dataclass(eq=False)
class ResponseCache:
    """One per process; share it across requests."""

    store: Store
    max_item_bytes: int = field(default=350_000, kw_only=True)
    clock: Callable[[], float] = field(default=time.time, kw_only=True)
    key_prefix: str = field(default="cache:", kw_only=True)

    def __post_init__(self) -> None:
        self._outage = Outage(logger, "response cache", "serving without the cache")

    async def get(self, key: str) -> dict[str, Any] | None:
        """The cached completion, or None (miss, expired, unreadable, or store down)."""
        try:
            item = await self.store.get(self.key_prefix + key)
        except StoreError as exc:
            self._outage.failed("get", exc)
            return None
        self._outage.ok()
        if item is None or item.get("v") != FORMAT_VERSION or not isinstance(blob := item.get("z"), str):
            return None
        try:
            if len(blob) > _OFFLOAD_BYTES:
                return await asyncio.to_thread(_decode, blob)
            return _decode(blob)
        except (ValueError, zlib.error, binascii.Error, UnicodeDecodeError) as exc:
            logger.warning("response cache: unreadable entry %s… (%s); treating as a miss", key[:12], exc)
            return None

    async def put(self, key: str, completion: Mapping[str, Any], ttl_s: float) -> bool:
        """Store `completion` for `ttl_s` seconds. False when skipped (too big) or failed."""
        if ttl_s <= 0:
            return False
        blob = (
            await asyncio.to_thread(_encode, completion)
            if _rough_size(completion) > _OFFLOAD_BYTES
            else _encode(completion)
        )
        size = len(blob) + len(self.key_prefix) + len(key) + _ITEM_OVERHEAD
        if size > self.max_item_bytes:
            logger.info(
                "response cache: skipped %s…: %d bytes compressed > max_item_bytes %d",
                key[:12],
                size,
                self.max_item_bytes,
            )
            return False
        try:
            await self.store.put(
                self.key_prefix + key, {"v": FORMAT_VERSION, "z": blob}, expires_at=self.clock() + ttl_s
            )
        except StoreError as exc:
            self._outage.failed("put", exc)
            return False
        self._outage.ok()
        return True


def _rough_size(completion: Mapping[str, Any]) -> int:
    """A cheap lower bound on the JSON size: the length of the message texts."""
    total = 0
    for choice in completion.get("choices") or ():
        message = choice.get("message") if isinstance(choice, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            total += len(content)
    return total
