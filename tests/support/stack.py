"""The pieces every lifecycle test starts: a scripted fake provider on 127.0.0.1, a rules file
that uses it, and the store URLs (SQLite in tmp, DynamoDB on a moto server)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.fake_upstream import make_fake_upstream
from tests.support.loopback import run_uvicorn_in_thread
from tests.support.moto_process import MotoProcess
from tests.support.moto_server import FAKE_ENV
from tests.support.scripted_upstream import ScriptedUpstream

PROVIDER_KEY_ENV = "LIFECYCLE_PROVIDER_KEY"
PROVIDER_KEY = "sk-lifecycle-provider-SECRET"
ROUTER_KEY = "rk-lifecycle-test"
PRICES = {"model-a": {"input": 1.0, "output": 4.0}, "model-b": {"input": 0.5, "output": 2.0}}


@dataclass
class Upstream:
    url: str
    app: ScriptedUpstream


@contextlib.contextmanager
def scripted_upstream(name: str = "lifecycle-fake") -> Iterator[Upstream]:
    app = ScriptedUpstream(make_fake_upstream("openai", name=name))
    with run_uvicorn_in_thread(app) as url:
        yield Upstream(url, app)


def rules_for(upstream_url: str, **sections: Any) -> dict[str, Any]:
    """One OpenAI-kind provider (the fake), two priced models, two tiers, a daily budget."""
    rules: dict[str, Any] = {
        "version": 1,
        "providers": {
            "fake": {"kind": "openai", "base_url": upstream_url + "/v1", "api_key_env": PROVIDER_KEY_ENV}
        },
        "models": {
            name: {"provider": "fake", "id": f"{name}-2025", "price": price} for name, price in PRICES.items()
        },
        "tiers": {"main": ["model-a", "model-b"], "alt": ["model-b"]},
        "default_tier": "main",
        "budgets": {"daily_usd": 100},
    }
    rules.update(sections)
    return rules


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory.resolve() / 'state.db'}"  # an absolute path: four slashes


def dynamodb_url(moto: MotoProcess, table: str | None = None, endpoint: str | None = None) -> str:
    """A store URL for `table` (created now when not given) reached at `endpoint` (default:
    the moto server itself; e.g. a `SlowProxy` in front of it)."""
    if table is None:
        table = moto.create_table()
    return f"dynamodb://{table}?endpoint={endpoint or moto.endpoint}&region=us-east-1"


def table_of(store_url: str) -> str:
    return store_url.removeprefix("dynamodb://").split("?", 1)[0]


DYNAMODB_TIMEOUT_S = "5"
"""The router's store deadline on the emulator (default 1 s): moto on a shared 2-core CI
machine can take over a second per call under a concurrent mix, and past the deadline the
router fails open (documented: requests go through uncounted) — a store outage, which is not
what these tests look at. SQLite keeps the default."""


def store_env(store_url: str) -> dict[str, str]:
    """The router's environment for a store: dummy AWS credentials for DynamoDB."""
    if not store_url.startswith("dynamodb://"):
        return {}
    return {**FAKE_ENV, "TIER_ROUTER_STORE_TIMEOUT_S": DYNAMODB_TIMEOUT_S}


def write_keys_file(path: Path, keys: dict[str, tuple[str, dict[str, Any]]]) -> Path:
    """A router keys file (`tier-router keys create` format): name -> (secret, extra fields
    such as tiers/daily_usd/rpm). Only the SHA-256 of each secret is written."""
    records = [
        {"name": name, "sha256": hashlib.sha256(secret.encode()).hexdigest(), **extra}
        for name, (secret, extra) in keys.items()
    ]
    path.write_text(json.dumps({"keys": records}))
    return path
