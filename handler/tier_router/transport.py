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
same question, the same answer. And a walk over the pool asks every idle connection: one `poll`
over all of the pool's sockets (`Readiness`) answers them all.
Only an `httpcore.AsyncConnectionPool` (httpx's default transport) is touched; anything else is
left as it is.

The pool's bookkeeping, made linear (`LinearPool`): on every request's start and end httpcore
walks its connections, and for each idle one counts all the connections again (a list built to
take its `len`): at 32 concurrent requests, ~1,000 state checks per walk, two walks per request —
more CPU than the rest of the router's own work on a request. `LinearPool` is httpcore 1.0.9's pool
with that walk done in one pass: the same checks in the same order, the same connections closed,
reused and opened. It is applied only to the httpcore versions it was written against
(`HTTPCORE_TESTED`); any other version keeps its own pool.

The request in one write (`ReadableCheckStream.write`): h11 hands the request's head and its body
to the stream as two writes — two `send` syscalls, two trips through anyio. The head is held
until the body's write (or the first read, or close) and both go out as one: the same bytes in
the same order, one syscall.
"""

from __future__ import annotations

import contextlib
import select
import typing

import httpcore
import httpx

HTTPX_TESTED = ">=0.27,<0.30"
"""The httpx versions `_transport_for_url` was tested with (the pin in pyproject.toml)."""
HTTPCORE_TESTED = frozenset({"1.0.9"})
"""The httpcore versions whose pool `LinearPool` reproduces (tests/test_transport.py)."""


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
    if type(pool) is httpcore.AsyncConnectionPool and httpcore.__version__ in HTTPCORE_TESTED:
        pool.__class__ = LinearPool  # the same pool, its walk in one pass (module doc)
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


class Readiness:
    """The sockets of one pool's connections in one `poll` object: during a walk over the pool
    (`LinearPool`) one `poll` answers every connection's `is_readable` — the same answers as one
    `poll` each, taken at one instant instead of a few microseconds apart."""

    __slots__ = ("owners", "poller", "ready")

    def __init__(self) -> None:
        self.poller = _POLL() if _POLL is not None else None
        self.owners: dict[int, ReadableCheckStream] = {}
        self.ready: set[int] | None = None
        """Descriptors with something to read (or closed), while a walk runs; None otherwise."""

    def add(self, fd: int, stream: ReadableCheckStream) -> None:
        if self.poller is not None:
            self.owners[fd] = stream
            self.poller.register(fd, _POLLIN)

    def remove(self, fd: int, stream: ReadableCheckStream) -> None:
        """Before `stream`'s socket closes (its descriptor may then be reused by another)."""
        if self.poller is not None and self.owners.get(fd) is stream:
            del self.owners[fd]
            self.poller.unregister(fd)

    def begin_walk(self) -> None:
        if self.poller is not None and self.owners:
            self.ready = {fd for fd, _ in self.poller.poll(0)}


_POLL = getattr(select, "poll", None)
_POLLIN = getattr(select, "POLLIN", 1)
_HEAD_END = b"\r\n\r\n"
_HTTP11 = b" HTTP/1.1\r\n"


class ReadableCheckStream(httpcore.AsyncNetworkStream):
    """A network stream that remembers its socket, for `is_readable`, and sends a request's head
    with its body (module doc); all else is the inner one's."""

    __slots__ = ("fd", "held", "held_timeout", "inner", "readiness", "sock")

    def __init__(self, inner: httpcore.AsyncNetworkStream, readiness: Readiness | None = None) -> None:
        self.inner = inner
        sock = inner.get_extra_info("socket")  # asyncio's TransportSocket, uvloop's PseudoSocket, ...
        self.sock: Socket | None = sock if callable(getattr(sock, "fileno", None)) else None
        self.fd = -1 if self.sock is None else self.sock.fileno()
        self.readiness = readiness if self.fd >= 0 else None
        if self.readiness is not None:
            self.readiness.add(self.fd, self)
        self.held = b""
        """A request head not yet sent: it goes out with the next write, before a read or close."""
        self.held_timeout: float | None = None

    async def _flush(self) -> None:
        held, self.held = self.held, b""
        await self.inner.write(held, self.held_timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        if self.held:
            with contextlib.suppress(httpcore.WriteError):  # as httpcore treats a failed request
                await self._flush()  # write: read the answer (a server may refuse early, then close)
        return await self.inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        if self.held:
            buffer, self.held = self.held + buffer, b""
        elif buffer.endswith(_HEAD_END) and _HTTP11 in buffer[: buffer.find(b"\r\n") + 2]:
            # an HTTP/1.1 request head (h11 writes it alone): hold it for its body
            self.held, self.held_timeout = buffer, timeout
            return
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        self.held = b""  # closing instead of reading: nothing waits for an answer to it
        if self.readiness is not None:
            self.readiness.remove(self.fd, self)
        await self.inner.aclose()

    async def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        tls = await self.inner.start_tls(ssl_context, server_hostname, timeout)
        return ReadableCheckStream(tls, self.readiness)  # the same socket: the TLS stream owns it now

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable" and self.sock is not None:
            readiness = self.readiness
            if readiness is not None and readiness.ready is not None and self.sock.fileno() == self.fd:
                return self.fd in readiness.ready  # the walk's one poll (`Readiness`)
            return is_readable(self.sock)
        return self.inner.get_extra_info(info)


class ReadableCheckBackend(httpcore.AsyncNetworkBackend):
    """The pool's backend, whose streams are `ReadableCheckStream`s."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner
        self.readiness = Readiness()

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
        return ReadableCheckStream(stream, self.readiness)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self.inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)
        return ReadableCheckStream(stream, self.readiness)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class LinearPool(httpcore.AsyncConnectionPool):
    """httpcore's pool, its bookkeeping walk in one pass (module doc). Nothing else differs."""

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        # httpcore 1.0.9's walk, step for step. Its third test, `is_idle() and len([is_idle()
        # for every connection]) > max_keepalive`, counts every connection: `len(connections)`.
        closing: list[httpcore.AsyncConnectionInterface] = []
        connections = self._connections
        backend = self._network_backend
        readiness = backend.readiness if isinstance(backend, ReadableCheckBackend) else None
        if readiness is not None:
            readiness.begin_walk()  # one poll for every idle connection's `has_expired`
        try:
            for connection in list(connections):
                if connection.is_closed():
                    connections.remove(connection)
                elif connection.has_expired() or (
                    connection.is_idle() and len(connections) > self._max_keepalive_connections
                ):
                    connections.remove(connection)
                    closing.append(connection)
        finally:
            if readiness is not None:
                readiness.ready = None
        for pool_request in [request for request in self._requests if request.is_queued()]:
            origin = pool_request.request.url.origin
            available = next(
                (c for c in connections if c.can_handle_request(origin) and c.is_available()), None
            )
            if available is not None:
                pool_request.assign_to_connection(available)
                continue
            if len(connections) >= self._max_connections:
                idle = next((c for c in connections if c.is_idle()), None)
                if idle is None:
                    continue  # stays queued until a connection frees up
                connections.remove(idle)
                closing.append(idle)
            connection = self.create_connection(origin)
            connections.append(connection)
            pool_request.assign_to_connection(connection)
        return closing


class ClientTransport(httpx.AsyncBaseTransport):
    """`client.send` behind the transport interface: for a client without a usable
    `_transport_for_url` (a future httpx), so the forwarder keeps working, only slower."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.client.send(request, stream=True)
