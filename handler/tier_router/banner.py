"""What `tier-router serve` says once at start-up, before uvicorn's own lines: where to send
requests, which rules file, tiers and models were loaded, which store, where the router keys
come from — and the warnings a newcomer must see: no router keys (one warning, one wording),
and several workers on a `memory://` store, which they cannot share."""

from __future__ import annotations

from tier_router.routing.engine import Rules
from tier_router.settings import DEFAULT_KEYS_FILE, Settings


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def store_note(url: str) -> str:
    if url.startswith("memory://"):
        return "this process only, lost on exit"
    if url.startswith("sqlite://"):
        return "a SQLite file, shared by this machine's processes"
    return "shared"


def banner(
    settings: Settings, rules: Rules, *, host: str, port: int, workers: int, keys: int, sources: list[str]
) -> str:
    """The start-up lines. `keys`: how many router keys are loaded; `sources`: where they come from."""
    spec = rules.spec
    lines = [
        f"tier-router: {base_url(host, port)} (OpenAI base_url; model 'auto', a tier or a model)",
        f"  rules   {settings.rules_path} ({len(spec.models)} models, {len(rules.tiers)} tiers,"
        f" {len(rules.rules)} rules)",
    ]
    width = max(len(tier) for tier in rules.tiers)
    for i, (tier, chain) in enumerate(rules.tiers.items()):
        default = "  (default)" if tier == rules.default_tier else ""
        models = ", ".join(route.name for route in chain)
        lines.append(f"  {'tiers' if i == 0 else '':<7} {tier:<{width}}  {models}{default}")
    lines.append(f"  store   {settings.store_url} ({store_note(settings.store_url)})")
    if workers > 1:
        lines.append(f"  workers {workers}")
    if keys or settings.keys_ssm:
        what = f"{keys} key{'s' if keys != 1 else ''}" if keys else "fetched on first use"
        lines.append(f"  keys    {', '.join(sources)}: {what}")
    else:
        empty = f"{', '.join(sources)} hold{'s' if len(sources) == 1 else ''} no keys" if sources else ""
        lines.append(f"  keys    {empty or 'none'}")
        lines.append(
            f"WARNING: {empty or 'no router keys configured'}: anyone who can reach {host}:{port} may use"
            " your provider keys. Fine for local experiments; for anything else create a key with"
            f" `tier-router keys create NAME` and serve with TIER_ROUTER_KEYS_FILE={DEFAULT_KEYS_FILE}."
        )
    if workers > 1 and settings.store_url.startswith("memory://"):
        lines.append(
            f"WARNING: --workers {workers} with a memory:// store: each worker keeps its own spend,"
            " budgets, rate limits and breakers (nothing is shared). Use sqlite:///... or dynamodb://..."
        )
    return "\n".join(lines)
