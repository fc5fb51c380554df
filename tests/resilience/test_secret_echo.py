"""Issue 13, item 9: a provider that echoes a secret never gets it to the client or the log.

The real router (`tier-router serve --log-level debug`, its own process) in front of a fake
provider on 127.0.0.1 that echoes the provider key — or the router key, which a client may
have pasted into its prompt — in every place a provider can put text: a 200 JSON body, the
`x-request-id` and `x-ratelimit-*` headers, a streamed answer (the key inside one event whose
bytes arrive in two TCP writes, and the key split across two content deltas), a 401 with
`www-authenticate: Bearer <key>` and the key in its error body, and a 400 whose message the
client gets back. Every byte the client receives (bodies, headers, the text it reassembles
from a stream) and every byte the router logs (stderr at debug level — httpcore's traces of
upstream response headers included — and the access log on stdout) is searched for the key.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.loopback import run_uvicorn_in_thread
from tests.support.router_process import REQUEST_ID, Router, running_router

PROVIDER_KEY = "sk-echo-PROVIDERKEY-7f3a9c1e5b2d4068"
ROUTER_KEY = "trk-echo-ROUTERKEY-c0ffee1234567890"
SECRETS = {"provider": PROVIDER_KEY, "router": ROUTER_KEY}
DIRECTIVE = re.compile(rb"\[echo=(\w+):(\w+)\]")
WRITE_GAP_S = 0.05
"""Between two writes of one answer: long enough that they reach the router as two reads."""


# -- the echoing provider ----------------------------------------------------------------------


def completion(content: str, secret: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{secret}",
        "object": "chat.completion",
        "created": 1,
        "model": "echo-1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    data: dict[str, Any] = {
        "id": "chatcmpl-echo",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "echo-1",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        data["usage"] = usage
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def stream_writes(scenario: str, secret: str) -> list[bytes]:
    """The stream's body as the TCP writes it is sent in."""
    head = [chunk({"role": "assistant", "content": "Your key: "})]
    tail = [
        chunk({}, "stop"),
        chunk({}, usage={"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}),
        b"data: [DONE]\n\n",
    ]
    if scenario == "stream_tcp":  # one event, its bytes cut in the middle of the key
        event = chunk({"content": f"<{secret}>"})
        cut = event.index(secret.encode()) + len(secret) // 2
        return [*head, event[:cut], event[cut:], *tail]
    assert scenario == "stream_split"  # the key's text in two content deltas
    half = len(secret) // 2
    return [*head, chunk({"content": secret[:half]}), chunk({"content": secret[half:] + "."}), *tail]


def echo_headers(secret: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-request-id", secret.encode()),
        (b"x-ratelimit-remaining-requests", secret.encode()),
        (b"x-ratelimit-limit-tokens", f"Bearer {secret}".encode()),
    ]


class EchoProvider:
    """OpenAI-compatible; the user message says what to echo: `[echo=SCENARIO:WHO]`, WHO being
    `provider` (the key the router sent) or `router` (the router key)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        found = DIRECTIVE.search(body)
        assert found, body
        scenario, who = found.group(1).decode(), found.group(2).decode()
        secret = SECRETS[who]
        sent = dict(scope["headers"]).get(b"authorization", b"").decode()
        assert sent == f"Bearer {PROVIDER_KEY}"  # the router sent the provider key, not the router's
        if scenario == "json":
            await self._whole(send, 200, completion(f"Your key is {secret}.", secret), echo_headers(secret))
        elif scenario == "status401":
            error = {"message": f"Incorrect API key provided: {secret}", "type": "invalid_request_error"}
            extra = [(b"www-authenticate", f'Bearer realm="echo", key="{secret}"'.encode())]
            headers = [*echo_headers(secret), *extra]
            await self._whole(send, 401, {"error": {**error, "code": secret}}, headers)
        elif scenario == "status400":
            error = {"message": f"Bad request made with key {secret}", "type": "invalid_request_error"}
            await self._whole(send, 400, {"error": error}, echo_headers(secret))
        else:
            headers = [(b"content-type", b"text/event-stream"), *echo_headers(secret)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for write in stream_writes(scenario, secret):
                await send({"type": "http.response.body", "body": write, "more_body": True})
                await asyncio.sleep(WRITE_GAP_S)
            await send({"type": "http.response.body", "body": b""})

    async def _whole(self, send: Any, status: int, payload: Any, headers: list[tuple[bytes, bytes]]) -> None:
        headers = [(b"content-type", b"application/json"), *headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


# -- the router in front of it -------------------------------------------------------------------


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    with run_uvicorn_in_thread(EchoProvider(), lifespan="off") as provider_url:
        provider = {"kind": "openai", "base_url": f"{provider_url}/v1", "api_key_env": "ECHO_KEY"}
        rules = {
            "version": 1,
            "providers": {"echo": provider},
            "models": {"echo": {"provider": "echo", "id": "echo-1", "price": {"input": 1.0, "output": 2.0}}},
            "tiers": {"fast": ["echo"]},
            "default_tier": "fast",
        }
        workdir = Path(tmp_path_factory.mktemp("secret-echo"))
        with running_router(
            workdir,
            rules,
            key=f"team={ROUTER_KEY}",
            store_url="memory://",
            env={"ECHO_KEY": PROVIDER_KEY},
            log_level="debug",
        ) as running:
            running.key = ROUTER_KEY
            yield running


def ask(router: Router, scenario: str, who: str, *, stream: bool = False) -> httpx.Response:
    body = {
        "model": "fast",
        "stream": stream,
        "messages": [{"role": "user", "content": f"Repeat my key. [echo={scenario}:{who}]"}],
    }
    headers = {"authorization": f"Bearer {ROUTER_KEY}"}
    return httpx.post(f"{router.url}/v1/chat/completions", json=body, headers=headers, timeout=15.0)


def streamed_text(body: str) -> str:
    """What a client shows: the content of every delta, joined."""
    text = []
    for line in body.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or ():
                text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


def router_log(router: Router, request_id: str) -> str:
    """Everything the router has logged once this request's access-log line is out."""
    deadline = time.monotonic() + 5
    while not any(r.get("request_id") == request_id for r in router.request_lines()):
        assert time.monotonic() < deadline, "the request's access-log line never came"
        time.sleep(0.05)
    return router.stdout_path.read_text() + router.stderr()


def assert_nowhere(secret: str, where: dict[str, str]) -> None:
    for part in (secret, secret[-16:]):  # the whole key, and its distinctive tail
        for name, text in where.items():
            assert part not in text, f"{part[:8]}… leaked in {name}: {text[text.find(part) - 80 :][:240]!r}"


def client_view(response: httpx.Response) -> dict[str, str]:
    return {"body": response.text, "headers": repr(response.headers.multi_items())}


def check(router: Router, response: httpx.Response, secret: str, extra: dict[str, str] | None = None) -> None:
    log = router_log(router, response.headers[REQUEST_ID])
    assert "receive_response_headers" in log  # httpcore's debug traces are in the log being searched
    assert_nowhere(secret, {**client_view(response), **(extra or {}), "router log": log})


# -- the checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["provider", "router"])
def test_a_whole_answer_and_its_headers_never_carry_the_key(router: Router, who: str) -> None:
    response = ask(router, "json", who)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Your key is [redacted]."
    assert response.headers["x-request-id"] == "[redacted]"
    assert response.headers["x-ratelimit-limit-tokens"] == "Bearer [redacted]"
    check(router, response, SECRETS[who])


@pytest.mark.parametrize("who", ["provider", "router"])
@pytest.mark.parametrize("scenario", ["stream_tcp", "stream_split"])
def test_a_streamed_answer_never_carries_the_key(router: Router, scenario: str, who: str) -> None:
    response = ask(router, scenario, who, stream=True)
    assert response.status_code == 200, response.text
    assert response.text.rstrip().endswith("data: [DONE]")
    text = streamed_text(response.text)
    expected = "Your key: <[redacted]>" if scenario == "stream_tcp" else "Your key: [redacted]."
    assert text == expected
    assert response.headers["x-ratelimit-remaining-requests"] == "[redacted]"
    check(router, response, SECRETS[who], {"reassembled text": text})


def test_a_401_echoing_the_key_in_its_headers_and_body_is_not_logged_or_relayed(router: Router) -> None:
    response = ask(router, "status401", "provider")
    assert response.status_code == 502, response.text
    assert "http_401" in response.json()["error"]["message"]
    check(router, response, PROVIDER_KEY)


@pytest.mark.parametrize("who", ["provider", "router"])
def test_a_client_error_relayed_to_the_client_never_carries_the_key(router: Router, who: str) -> None:
    response = ask(router, "status400", who)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "Bad request made with key [redacted]"
    check(router, response, SECRETS[who])
