"""The one place tier-router reaches into httpx's internals: the client's transport for a URL.

A provider call needs none of `AsyncClient.send`'s layers (auth and redirect loops, event
hooks, cookie jar), and they cost more per request than the rest of the router's preparation.
So the forwarder hands its request straight to the transport `send` would have picked — the
pool and its timeouts, the `mock://` mount, a test double — found with the client's private
`_transport_for_url`. httpx has no public API for that lookup.

`tests/test_transport.py` holds the lookup to what the forwarder relies on, and fails loudly
when an httpx upgrade changes it; pyproject.toml pins httpx to `HTTPX_TESTED`. If the lookup
is missing or answers something that is not a transport, forwarding still works through
`client.send` (`ClientTransport`), only slower.

The pool's readiness check, made cheap (`cheap_readable_checks`): before reusing an idle
keep-alive connection, and on every request's start and end for every idle connection in the
pool, httpcore asks the connection's stream whether the server has closed it
(`get_extra_info("is_readable")`, a `poll` of the socket). Over anyio that question first
looks the raw socket up through anyio's typed attributes, which build a dict of closures per
call: at 32 concurrent requests that lookup cost more than the poll itself. The pool's network
backend is wrapped so that each stream remembers its socket once and polls it directly — the
same question, the same answer. Only an `httpcore.AsyncConnectionPool` (httpx's default
transport) is touched; anything else is left as it is.
"""

from __future__ import annotations

import select
import typing

import httpcore
import httpx

HTTPX_TESTED = ">=0.27,<0.30"
"""The httpx versions `_transport_for_url` was tested with (the pin in pyproject.toml)."""


def transport_for(client: httpx.AsyncClient, url: httpx.URL) -> httpx.AsyncBaseTransport:
    """The transport `client.send` would use for `url` (look it up once per URL: it is a
    walk over the client's mounts)."""
    lookup = getattr(client, "_transport_for_url", None)
    if lookup is not None:
        transport = lookup(url)
        if isinstance(transport, httpx.AsyncBaseTransport):
            cheap_readable_checks(transport)
            return transport
    return ClientTransport(client)


def cheap_readable_checks(transport: httpx.AsyncBaseTransport) -> bool:
    """Wrap the network backend of `transport`'s httpcore pool (module doc); True when it is
    (or already was) wrapped. Connections opened from then on answer `is_readable` from their
    own socket; those already open keep their streams."""
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool):
        return False
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, ReadableCheckBackend):
        return True
    if not isinstance(backend, httpcore.AsyncNetworkBackend):
        return False
    pool._network_backend = ReadableCheckBackend(backend)
    return True


class Socket(typing.Protocol):
    def fileno(self) -> int: ...


def is_readable(sock: Socket) -> bool:
    """httpcore's question: would a read return at once (data, or the end: the peer closed)?"""
    fd = sock.fileno()
    if fd < 0:  # closed: the next read returns the end
        return True
    if _POLL is not None:
        poller = _POLL()
        poller.register(fd, _POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - Windows


_POLL = getattr(select, "poll", None)
_POLLIN = getattr(select, "POLLIN", 1)


class ReadableCheckStream(httpcore.AsyncNetworkStream):
    """A network stream that remembers its socket, for `is_readable`; all else is the inner one's."""

    __slots__ = ("inner", "sock")

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self.inner = inner
        sock = inner.get_extra_info("socket")  # asyncio's TransportSocket, uvloop's PseudoSocket, ...
        self.sock: Socket | None = sock if callable(getattr(sock, "fileno", None)) else None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self.inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        return ReadableCheckStream(await self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable" and self.sock is not None:
            return is_readable(self.sock)
        return self.inner.get_extra_info(info)


class ReadableCheckBackend(httpcore.AsyncNetworkBackend):
    """The pool's backend, whose streams are `ReadableCheckStream`s."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self.inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return ReadableCheckStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self.inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)
        return ReadableCheckStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class ClientTransport(httpx.AsyncBaseTransport):
    """`client.send` behind the transport interface: for a client without a usable
    `_transport_for_url` (a future httpx), so the forwarder keeps working, only slower."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.client.send(request, stream=True)
