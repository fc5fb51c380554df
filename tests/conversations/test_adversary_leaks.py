"""Adversary: what a conversation's id and prompt reveal. Neither an explicit id (header,
metadata or prompt_cache_key) nor the prompt's text may appear in the request's log line, its
response headers, explain's answer or the store; the label is the same for every turn of the
conversation and differs between tenants (router keys) that use the same id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tier_router.app import create_app
from tier_router.router_keys import hash_key
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings
from tier_router.store.memory import MemoryStore

from tests.conversations.turns import FLAKY_THEN_STEADY
from tests.support.router_app import asgi_client
from tests.support.stores import Wrapped

pytestmark = pytest.mark.anyio
SECRET_ID = "acct-7731-ssn-123-45-6789"
SECRET_TEXT = "my password is hunter2-zebra"
RULES = FLAKY_THEN_STEADY


class Recording(Wrapped):
    """Keeps every `put`'s key and value."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.puts: list[tuple[str, dict[str, Any]]] = []

    async def put(self, key: str, value: Any, **options: Any) -> None:
        self.puts.append((key, dict(value)))
        await super().put(key, value, **options)


@pytest.mark.parametrize(
    "where",
    [
        {"headers": {"x-conversation-id": SECRET_ID}},
        {"body": {"metadata": {"conversation_id": SECRET_ID}}},
        {"body": {"prompt_cache_key": SECRET_ID}},
        {},  # no explicit id: the prefix (the secret text) names the conversation
    ],
    ids=["header", "metadata", "prompt_cache_key", "prefix"],
)
async def test_no_id_or_prompt_text_leaves_the_router(
    where: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        yaml.safe_dump({"keys": [{"name": n, "sha256": hash_key(f"k-{n}")} for n in ("team-a", "team-b")]})
    )
    store = Recording(MemoryStore())
    settings = Settings(rules_path=tmp_path / "rules.yaml", keys_file=keys, log_requests=True)
    app = create_app(settings, rules=parse_rules(RULES), store=store)
    seen: list[str] = []
    labels = []
    async with asgi_client(app) as client:
        for team in ("team-a", "team-b"):
            messages: list[dict[str, Any]] = [{"role": "user", "content": SECRET_TEXT}]
            for text in ("and?", "more"):
                body = {"model": "auto", "messages": messages, **where.get("body", {})}
                headers = {"authorization": f"Bearer k-{team}", **where.get("headers", {})}
                response = await client.post("/v1/chat/completions", json=body, headers=headers)
                assert response.status_code == 200, response.text
                seen.append(json.dumps(dict(response.headers)))
                answer = response.json()["choices"][0]["message"]
                messages = [
                    *messages,
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": text},
                ]
                explained = await client.post(
                    "/v1/route/explain", json={**body, "messages": messages}, headers=headers
                )
                seen.append(explained.text)
                labels.append(explained.json()["conversation"]["conversation"])
                assert answer  # answered
    out = capsys.readouterr().out
    chat_lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    chats = [line for line in chat_lines if line.get("path") == "/v1/chat/completions"]
    assert len({line["conversation"]["conversation"] for line in chats}) == 2  # one per tenant
    assert chats[0]["conversation"]["moved_by"] == "failover"
    assert labels[0] == labels[1] != labels[2] == labels[3]
    items = [json.dumps([key, value]) for key, value in store.puts]
    assert any(key.startswith("conv:") for key, _ in store.puts)
    for text in (out, *seen, *items):
        assert SECRET_ID not in text
        assert SECRET_TEXT not in text
        assert "hunter2" not in text
