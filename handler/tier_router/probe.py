"""The health probe: one cheap request per provider, recorded on the same breakers requests use.

`tier-router probe` runs it once (a table, exit 0 when every provider is healthy, 1 otherwise);
on Lambda an EventBridge schedule runs it (`lambda_entry`). Each provider is checked as its
`probe:` section in the rules file says:

- `GET {base_url}/models` by default (Anthropic: `{base_url}/v1/models`) — no tokens billed;
- `probe: {model: NAME}`: a 1-token chat completion on that model of the provider;
- `probe: {enabled: false}`: not checked (nor are `mock` providers, which have no endpoint).

What is recorded, as for a request (`fallback.verdict`): a success closes the provider's breaker
(and, for a completion, the model's) — so a provider that came back gets traffic again without
waiting out a recovery period; a failure counts against the provider (for a completion, a
failure its model can cause alone counts against the model). A probe that never reached the
provider (no key, the router's own pool exhausted) and a refusal that blames the request (4xx)
record nothing. The health probe carries no user traffic and takes no probe lease: the one
probe at a time the lease guarantees is about requests.

Every provider is checked at once; each check is bounded by its `probe.timeout_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import httpx

from tier_router.breakers import BreakerBoard, State, model_key, provider_breaker
from tier_router.fallback import FAILURES, Breaker, Outcome, outcome_of, verdict
from tier_router.provider_keys import KeySource
from tier_router.providers.anthropic import build_headers
from tier_router.providers.base import UpstreamRequest
from tier_router.providers.openai_compat import endpoint
from tier_router.providers.registry import adapter_for
from tier_router.routing.engine import ModelRoute, Rules
from tier_router.settings import Settings

if TYPE_CHECKING:
    from tier_router.schema import Provider

PING = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
"""The completion probe's body (the model is the probed one's)."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One provider's check. Never holds a secret."""

    provider: str
    check: str  # "GET /models", "chat <model>", or why it was not checked
    outcome: Outcome | None  # None: not checked
    elapsed_ms: int = 0
    breaker: State | None = None  # the provider breaker after recording; None without breakers

    @property
    def healthy(self) -> bool:
        return self.outcome in (None, Outcome.OK)

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["outcome"] = str(self.outcome) if self.outcome is not None else "skipped"
        data["healthy"] = self.healthy
        return data


async def probe_providers(
    rules: Rules, client: httpx.AsyncClient, keys: KeySource, board: BreakerBoard | None
) -> list[ProbeResult]:
    """Check every provider of `rules` at once; record each outcome on `board` (when given)."""
    names = list(rules.spec.providers)
    return list(await asyncio.gather(*(_probe(name, rules, client, keys, board) for name in names)))


async def _probe(
    name: str, rules: Rules, client: httpx.AsyncClient, keys: KeySource, board: BreakerBoard | None
) -> ProbeResult:
    provider = rules.spec.providers[name]
    if provider.kind == "mock" or not provider.probe.enabled:
        why = "skipped: mock provider" if provider.kind == "mock" else "skipped: probe disabled"
        return ProbeResult(name, why, None)
    route = rules.routes[provider.probe.model] if provider.probe.model else None
    check = f"chat {route.name}" if route else "GET /models"
    key = await keys.get(provider.api_key_env) if provider.api_key_env else None
    started = time.monotonic()
    if provider.api_key_env and not key:
        outcome = Outcome.MISSING_KEY
    else:
        outcome = await _check(provider, route, key, client)
    elapsed_ms = round((time.monotonic() - started) * 1000)
    state = await _record(board, name, route, outcome) if board is not None else None
    return ProbeResult(name, check, outcome, elapsed_ms, state)


async def _check(
    provider: Provider, route: ModelRoute | None, key: str | None, client: httpx.AsyncClient
) -> Outcome:
    request = completion_request(route, key) if route else models_request(provider, key)
    method = "POST" if route else "GET"
    try:
        async with asyncio.timeout(provider.probe.timeout_s):
            response = await client.request(
                method, request.url, headers=request.headers, content=request.content or None
            )
            if not response.is_success:
                return Outcome.http(response.status_code)
            if route is not None:
                adapter_for(route.provider.kind).parse(response.content)  # a real answer, or it raises
    except FAILURES as exc:
        return outcome_of(exc)
    return Outcome.OK


def models_request(provider: Provider, key: str | None) -> UpstreamRequest:
    """`GET /models` with the provider's authentication (no body; nothing is billed)."""
    if provider.kind == "anthropic":
        headers = {k: v for k, v in build_headers(key or "").items() if k != "content-type"}
        url = f"{provider.base_url}/v1/models"
    else:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        url = endpoint(provider.base_url, "/models")
    return UpstreamRequest(url, {**headers, **provider.headers}, b"")


def completion_request(route: ModelRoute, key: str | None) -> UpstreamRequest:
    """A 1-token chat completion on `route`, built by its provider's adapter."""
    return adapter_for(route.provider.kind).build(route, {"model": route.name, **PING}, key)


async def _record(board: BreakerBoard, name: str, route: ModelRoute | None, outcome: Outcome) -> State:
    """Record `outcome` as a request's would be; the provider breaker's state afterwards."""
    pkey = provider_breaker(name)
    keys = [pkey, model_key(route)] if route else [pkey]
    views = await board.snapshot(keys)
    judged = verdict(outcome).breaker
    if outcome == Outcome.OK:
        for key in keys:
            await board.record_success(key, views[key])
    elif judged == Breaker.PROVIDER or (judged == Breaker.MODEL and route is None):
        await board.record_failure(pkey, views[pkey])
    elif judged == Breaker.MODEL and route is not None:
        await board.record_failure(model_key(route), views[model_key(route)])
    return (await board.snapshot([pkey]))[pkey].state


async def probe_with_store(rules: Rules, settings: Settings, store_url: str) -> list[ProbeResult]:
    """`probe_providers` as `tier-router probe` runs it: its own client, store and key source
    (SSM when configured, as on Lambda), all closed afterwards."""
    from tier_router.aws.ssm import key_source
    from tier_router.gateway import breaker_health, make_http_client
    from tier_router.store.factory import open_store

    names = sorted({p.api_key_env for p in rules.spec.providers.values() if p.api_key_env})
    client = make_http_client(settings)
    try:
        store = open_store(store_url, settings=settings, http_client=client)
        try:
            health = breaker_health(store, rules)
            keys = key_source(names, settings=settings, http_client=client)
            return await probe_providers(rules, client, keys, health.board if health else None)
        finally:
            await store.aclose()
    finally:
        await client.aclose()


def summary(results: Sequence[ProbeResult]) -> dict[str, object]:
    """The results as one JSON-able object (the CLI's --json, the Lambda's return value)."""
    return {"healthy": all(r.healthy for r in results), "providers": [r.as_dict() for r in results]}


def render(results: Sequence[ProbeResult]) -> str:
    """The results as a table, one provider a line."""
    lines = [f"{'provider':<20} {'check':<28} {'result':<18} {'ms':>6}  breaker"]
    for r in results:
        result = "ok" if r.outcome == Outcome.OK else ("-" if r.outcome is None else str(r.outcome))
        lines.append(f"{r.provider:<20} {r.check:<28} {result:<18} {r.elapsed_ms:>6}  {r.breaker or '-'}")
    healthy = sum(r.healthy for r in results)
    lines.append(f"{healthy} of {len(results)} providers healthy")
    return "\n".join(lines)
