"""docs/http-api.md's "Headers" paragraph: which responses carry which `x-router-*` headers, read
from the page and checked on the demo rules' app, one request per status it names."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tier_router.app import create_app
from tier_router.router_keys import hash_key
from tier_router.settings import Settings

from tests.docs.blocks import ROOT
from tests.support.demo import unjudged_demo
from tests.support.router_app import asgi_client

CHAT = "/v1/chat/completions"
UNSET = "TIER_ROUTER_DOCS_TEST_NO_SUCH_KEY"
NAME = re.compile(r"`(x-router-[a-z-]+)`")
PAGE = "docs/http-api.md"


def claims() -> dict[str, Any]:
    """The paragraph's sentences: which headers, on which statuses."""
    text = " ".join((ROOT / PAGE).read_text(encoding="utf-8").split())
    start = text.index("**Headers.**")
    paragraph = text[start : text.index("(`tests/docs/test_headers.py`", start)]
    every, rest = paragraph.split("Every response, errors included, carries", 1)[1].split(
        "An answer (200) adds", 1
    )
    answer, rest = rest.split("A request refused after routing", 1)
    after, before = rest.split("A request refused before routing", 1)
    refused, failed = after.split("one that no model answered", 1)
    always, optional = answer.split("— plus, when they apply,", 1)
    return {
        "every": set(NAME.findall(every)),
        "answer": set(NAME.findall(always)),
        "unless_streamed": set(NAME.findall(always.split("unless streamed,", 1)[1])),
        "optional": set(NAME.findall(optional)),
        "refused": set(NAME.findall(refused)),
        "refused_statuses": {int(s) for s in re.findall(r"\b(\d{3})\b", refused)},
        "failed": set(NAME.findall(failed)),
        "failed_statuses": {int(s) for s in re.findall(r"\b(\d{3})\b", failed)},
        "before": set(NAME.findall(before.split("carries only", 1)[1])),
        "before_statuses": {int(s) for s in re.findall(r"\b(\d{3})\b", before.split("carries", 1)[0])},
    }


CLAIMS = claims()


def rules_file(tmp_path: Path) -> Path:
    """The demo rules (unjudged) plus a tier whose only provider always fails."""
    rules = yaml.safe_load(unjudged_demo().read_text())
    rules["providers"]["mock-down"] = {"kind": "mock", "base_url": "mock://down?fail_rate=1"}
    rules["models"]["dead"] = {"provider": "mock-down", "id": "mock-dead", "price": {"input": 1, "output": 1}}
    rules["tiers"]["down"] = ["dead"]
    rules["providers"]["keyless"] = {
        "kind": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": UNSET,
    }
    rules["models"]["locked"] = {"provider": "keyless", "id": "locked", "price": {"input": 1, "output": 1}}
    rules["tiers"]["unkeyed"] = ["locked"]
    rules["providers"]["mock-slow"] = {
        "kind": "mock",
        "base_url": "mock://slow?latency_ms=2000",
        "timeouts": {"total": 0.2, "first_token": 0.2},
    }
    rules["models"]["slow"] = {"provider": "mock-slow", "id": "mock-slow", "price": {"input": 1, "output": 1}}
    rules["tiers"]["late"] = ["slow"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def keys_file(tmp_path: Path) -> Path:
    keys = [
        {"name": "open", "sha256": hash_key("k-open")},
        {"name": "budget-only", "sha256": hash_key("k-budget"), "tiers": ["budget"]},
        {"name": "broke", "sha256": hash_key("k-broke"), "daily_usd": 0.0001},
    ]
    path = tmp_path / "keys.yaml"
    path.write_text(json.dumps({"keys": keys}))
    return path


def chat(model: str = "auto", prompt: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


async def stalled_body() -> AsyncIterator[bytes]:
    yield b'{"model": "auto", '
    await asyncio.sleep(1)
    yield b"}"


async def responses(tmp_path: Path) -> dict[str, httpx.Response]:
    settings = Settings(
        rules_path=rules_file(tmp_path),
        keys_file=keys_file(tmp_path),
        max_body_bytes=4096,
        body_timeout_s=0.2,
    )
    app = create_app(settings)
    bearer = {"authorization": "Bearer k-open"}
    async with asgi_client(app) as client:
        got = {
            "200": await client.post(CHAT, json=chat(), headers=bearer),
            "200 stream": await client.post(CHAT, json=chat(stream=True), headers=bearer),
            "400": await client.post(
                CHAT, content=b"{not json", headers={**bearer, "content-type": "application/json"}
            ),
            "401": await client.post(CHAT, json=chat(), headers={"authorization": "Bearer wrong"}),
            "403": await client.post(
                CHAT, json=chat("premium"), headers={"authorization": "Bearer k-budget"}
            ),
            "404": await client.post(CHAT, json=chat("no-such-model"), headers=bearer),
            "408": await client.post(
                CHAT, content=stalled_body(), headers={**bearer, "content-type": "application/json"}
            ),
            "413": await client.post(CHAT, json=chat(prompt="x" * 5000), headers=bearer),
            "415": await client.post(CHAT, content=b"hi", headers={**bearer, "content-type": "text/plain"}),
            "429": await client.post(
                CHAT, json=chat(prompt="Why?"), headers={"authorization": "Bearer k-broke"}
            ),
            "502": await client.post(CHAT, json=chat("down"), headers=bearer),
            "503": await client.post(CHAT, json=chat("unkeyed"), headers=bearer),
            "504": await client.post(CHAT, json=chat("late"), headers=bearer),
        }
    return got


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, httpx.Response]:
    return asyncio.run(responses(tmp_path_factory.mktemp("headers")))


def router_headers(response: httpx.Response) -> set[str]:
    return {name for name in response.headers if name.startswith("x-router-")}


def test_the_page_says_what_this_test_checks() -> None:
    assert CLAIMS["every"] == {"x-router-request-id"}
    assert CLAIMS["before"] == {"x-router-request-id"}
    assert CLAIMS["unless_streamed"] == {"x-router-cost-usd"}
    assert {"x-router-tier", "x-router-model"} <= CLAIMS["answer"]
    assert CLAIMS["before_statuses"] == {400, 401, 403, 404, 408, 413, 415}
    assert CLAIMS["refused_statuses"] == {429}
    assert CLAIMS["failed_statuses"] == {502, 503, 504}
    assert CLAIMS["failed"] == {"x-router-attempts"}


def test_every_response_has_a_request_id(seen: dict[str, httpx.Response]) -> None:
    for label, response in seen.items():
        assert CLAIMS["every"] <= router_headers(response), label


def test_an_answer_says_what_the_router_did(seen: dict[str, httpx.Response]) -> None:
    plain, streamed = seen["200"], seen["200 stream"]
    assert (plain.status_code, streamed.status_code) == (200, 200)
    expected = CLAIMS["every"] | CLAIMS["answer"]
    assert router_headers(plain) - CLAIMS["optional"] == expected
    assert router_headers(streamed) - CLAIMS["optional"] == expected - CLAIMS["unless_streamed"]


def test_a_request_refused_before_routing_has_only_its_id(seen: dict[str, httpx.Response]) -> None:
    for status in CLAIMS["before_statuses"]:
        response = seen[str(status)]
        assert response.status_code == status, (status, response.text)
        assert router_headers(response) == CLAIMS["before"], status


def test_a_request_refused_after_routing_has_the_decision(seen: dict[str, httpx.Response]) -> None:
    response = seen["429"]
    assert response.status_code == 429, response.text
    assert router_headers(response) == CLAIMS["every"] | CLAIMS["refused"]


def test_a_request_that_failed_has_the_decision_and_its_attempts(seen: dict[str, httpx.Response]) -> None:
    for status in sorted(CLAIMS["failed_statuses"]):
        response = seen[str(status)]
        assert response.status_code == status, (status, response.text)
        assert router_headers(response) == CLAIMS["every"] | CLAIMS["refused"] | CLAIMS["failed"], status
