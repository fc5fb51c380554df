"""The one use of an httpx internal (`AsyncClient._transport_for_url`), held to what the
forwarder relies on: these tests fail loudly when an httpx upgrade changes it. Then check
the new version, and move the pin in pyproject.toml and `HTTPX_TESTED` together."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

import httpx
import pytest
from packaging.specifiers import SpecifierSet
from tier_router.providers.mock import MockTransport
from tier_router.transport import HTTPX_TESTED, ClientTransport, transport_for

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_pyproject_pins_httpx_to_the_tested_range_and_it_is_installed() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = [d for d in dependencies if re.match(r"httpx\b", d)]
    assert pins == [f"httpx{HTTPX_TESTED}"]
    assert httpx.__version__ in SpecifierSet(HTTPX_TESTED), (
        f"httpx {httpx.__version__} is not a version tier_router.transport was tested with"
    )


def test_the_private_lookup_exists() -> None:
    client = httpx.AsyncClient()
    assert callable(getattr(client, "_transport_for_url", None)), (
        f"httpx {httpx.__version__} has no AsyncClient._transport_for_url: "
        "the forwarder falls back to client.send (slower); see tier_router/transport.py"
    )


def test_a_mounted_transport_serves_its_scheme_and_the_default_one_serves_http() -> None:
    mock = MockTransport()
    client = httpx.AsyncClient(mounts={"mock://": mock})
    assert client._transport_for_url(httpx.URL("mock://demo/chat/completions")) is mock
    assert transport_for(client, httpx.URL("mock://demo/chat/completions")) is mock
    https = transport_for(client, httpx.URL("https://api.openai.test/v1/chat/completions"))
    http = transport_for(client, httpx.URL("http://127.0.0.1:11434/v1/chat/completions"))
    assert isinstance(https, httpx.AsyncHTTPTransport)
    assert https is http  # one pool for every provider


def test_a_clients_own_transport_is_the_default() -> None:
    """What tests and custom clients pass as `transport=` is what the forwarder sends through."""
    own = httpx.MockTransport(lambda request: httpx.Response(200))
    client = httpx.AsyncClient(transport=own)
    assert transport_for(client, httpx.URL("https://provider.test/v1")) is own


def test_the_transport_is_what_send_uses() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, text="sent")

    async def main() -> None:
        mounts = {"https://provider.test": httpx.MockTransport(handler)}
        async with httpx.AsyncClient(mounts=mounts) as client:
            request = httpx.Request("POST", "https://provider.test/v1/chat/completions")
            response = await transport_for(client, request.url).handle_async_request(request)
            await response.aread()
            assert response.text == "sent"

    asyncio.run(main())
    assert seen == ["https://provider.test/v1/chat/completions"]


class NoLookup:
    """A client whose private lookup is gone (or renamed): only the public `send`."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    async def send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(200, text="via send")


class OddLookup(NoLookup):
    """A lookup that answers something that is not a transport."""

    def _transport_for_url(self, url: httpx.URL) -> object:
        return object()


@pytest.mark.parametrize("client_type", [NoLookup, OddLookup])
def test_without_a_usable_lookup_requests_go_through_send(client_type: type[NoLookup]) -> None:
    client = client_type()
    transport = transport_for(client, httpx.URL("https://provider.test/v1"))  # type: ignore[arg-type]
    assert isinstance(transport, ClientTransport)
    request = httpx.Request("POST", "https://provider.test/v1/chat/completions")
    response = asyncio.run(transport.handle_async_request(request))
    assert response.text == "via send"
    assert client.sent == [request]


# -- the pool's readiness check, answered from each stream's own socket -----------------------------


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closes: dict[str, bool]) -> None:
    """An HTTP/1.1 server that answers every request with 200 "ok", then keeps the connection
    open (keep-alive) or, while `closes["now"]`, closes it right after the answer, as a server
    dropping idle connections does."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            if closes["now"]:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


def test_the_pool_streams_answer_is_readable_from_their_socket_and_drop_a_closed_connection() -> None:
    """The pool's backend is wrapped once; its streams poll their own socket: idle and open,
    not readable; closed by the server, readable — and the pool then opens a new connection
    instead of sending into the closed one (the request succeeds)."""
    from tier_router.transport import ReadableCheckBackend, ReadableCheckStream, cheap_readable_checks

    async def main() -> None:
        peers: list[object] = []
        closes = {"now": False}

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer.get_extra_info("peername"))
            await _serve(reader, writer, closes)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = httpx.URL(f"http://127.0.0.1:{port}/v1/chat/completions")
        async with server, httpx.AsyncClient() as client:
            transport = transport_for(client, url)
            pool = transport._pool  # type: ignore[attr-defined]
            assert isinstance(pool._network_backend, ReadableCheckBackend)
            assert cheap_readable_checks(transport) is True  # idempotent: not wrapped twice
            assert not isinstance(pool._network_backend.inner, ReadableCheckBackend)

            async def post() -> str:
                response = await transport.handle_async_request(httpx.Request("POST", url, content=b"{}"))
                return (await response.aread()).decode()

            assert await post() == "ok"
            [connection] = pool.connections
            stream = connection._connection._network_stream
            assert isinstance(stream, ReadableCheckStream)
            assert stream.sock is not None
            assert stream.get_extra_info("is_readable") is False  # idle, open
            assert await post() == "ok"
            assert len(peers) == 1  # reused
            closes["now"] = True
            assert await post() == "ok"  # the server closes this one after answering
            for _ in range(100):
                if stream.get_extra_info("is_readable"):
                    break
                await asyncio.sleep(0.01)
            assert stream.get_extra_info("is_readable") is True  # the end is waiting to be read
            closes["now"] = False
            assert await post() == "ok"  # ... so the pool did not reuse it
            assert len(peers) == 2

    asyncio.run(main())


def test_a_transport_without_an_httpcore_pool_is_left_alone() -> None:
    from tier_router.transport import cheap_readable_checks

    own = httpx.MockTransport(lambda request: httpx.Response(200))
    assert cheap_readable_checks(own) is False
    assert transport_for(httpx.AsyncClient(transport=own), httpx.URL("https://provider.test/v1")) is own
