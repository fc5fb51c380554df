"""The pool's one-pass bookkeeping (`LinearPool`) and the request sent in one write
(`ReadableCheckStream`): the same decisions and the same bytes as httpcore's own, less work."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import httpcore
import httpx
import pytest
from tier_router.transport import HTTPCORE_TESTED, LinearPool, ReadableCheckStream, transport_for

ORIGINS = ("http://a.test:80", "http://b.test:80")


def test_the_installed_httpcore_is_one_linear_pool_reproduces_and_the_forwarders_pool_is_one() -> None:
    assert httpcore.__version__ in HTTPCORE_TESTED, (
        f"httpcore {httpcore.__version__}: check LinearPool against its _assign_requests_to_connections"
        " and add the version to HTTPCORE_TESTED (tier_router/transport.py)"
    )
    transport = transport_for(httpx.AsyncClient(), httpx.URL("https://provider.test/v1"))
    assert type(transport._pool) is LinearPool  # type: ignore[attr-defined]


@dataclass(eq=False)
class FakeConnection:
    """What the pool asks a connection, answered from fixed facts (asking changes nothing)."""

    id: int
    origin: str
    state: str  # idle | active | new | closed
    expired: bool = False

    def is_closed(self) -> bool:
        return self.state == "closed"

    def has_expired(self) -> bool:
        return self.expired

    def is_idle(self) -> bool:
        return self.state == "idle"

    def is_available(self) -> bool:
        return self.state == "idle"

    def can_handle_request(self, origin: object) -> bool:
        return origin == self.origin


@dataclass(eq=False)
class FakeRequest:
    origin: str
    connection: FakeConnection | None = None
    request: object = field(init=False)

    def __post_init__(self) -> None:
        self.request = type("R", (), {"url": type("U", (), {"origin": self.origin})})()

    def is_queued(self) -> bool:
        return self.connection is None

    def assign_to_connection(self, connection: FakeConnection) -> None:
        self.connection = connection


class Opening:
    """`create_connection` for both pools: numbered new connections, in order."""

    next_id = 1000

    def create_connection(self, origin: object) -> FakeConnection:
        self.next_id += 1
        return FakeConnection(self.next_id, str(origin), "new")


class StockPool(Opening, httpcore.AsyncConnectionPool):  # type: ignore[misc]
    pass


class LinearUnderTest(Opening, LinearPool):  # type: ignore[misc]
    pass


def scenario(seed: int, pool_type: type[httpcore.AsyncConnectionPool]) -> httpcore.AsyncConnectionPool:
    rng = random.Random(seed)
    pool = pool_type(max_connections=rng.randint(1, 10), max_keepalive_connections=rng.randint(0, 8))
    states = ("idle", "idle", "active", "new", "closed")
    pool._connections = [  # type: ignore[assignment]
        FakeConnection(i, rng.choice(ORIGINS), rng.choice(states), rng.random() < 0.15)
        for i in range(rng.randint(0, 12))
    ]
    requests = [FakeRequest(rng.choice(ORIGINS)) for _ in range(rng.randint(0, 5))]
    for request in requests:
        if rng.random() < 0.3 and pool._connections:
            request.connection = rng.choice(pool._connections)  # type: ignore[assignment]
    pool._requests = requests  # type: ignore[assignment]
    return pool


def outcome(pool: httpcore.AsyncConnectionPool) -> tuple[list[int], list[int], list[int | None]]:
    closing = pool._assign_requests_to_connections()
    return (
        [c.id for c in pool._connections],  # type: ignore[attr-defined]
        [c.id for c in closing],  # type: ignore[attr-defined]
        [r.connection.id if r.connection else None for r in pool._requests],  # type: ignore[attr-defined]
    )


@pytest.mark.parametrize("block", range(4))
def test_the_linear_walk_keeps_closes_reuses_and_opens_exactly_what_httpcores_does(block: int) -> None:
    compared = 0
    for seed in range(block * 1000, (block + 1) * 1000):
        stock, linear = outcome(scenario(seed, StockPool)), outcome(scenario(seed, LinearUnderTest))
        assert linear == stock, f"seed {seed}"
        compared += bool(stock[1]) or any(r is not None for r in stock[2])
    assert compared > 300  # the scenarios do close and assign connections, not only no-ops


def test_a_surplus_of_idle_connections_is_closed_as_httpcore_closes_it() -> None:
    """httpcore compares ALL connections (not only idle ones) with max_keepalive: kept as it is."""
    for pool_type in (StockPool, LinearUnderTest):
        pool = pool_type(max_connections=10, max_keepalive_connections=2)
        pool._connections = [  # type: ignore[assignment]
            FakeConnection(0, ORIGINS[0], "active"),
            FakeConnection(1, ORIGINS[0], "idle"),
            FakeConnection(2, ORIGINS[0], "active"),
            FakeConnection(3, ORIGINS[0], "idle"),
        ]
        assert outcome(pool) == ([0, 2], [1, 3], [])  # 4 connections > 2, then 3 > 2


class Recording(httpcore.AsyncNetworkStream):
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, float | None]] = []

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        self.calls.append(("read", b"", timeout))
        return b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.calls.append(("write", buffer, timeout))

    async def aclose(self) -> None:
        self.calls.append(("close", b"", None))


HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\n"


def test_a_request_head_goes_out_with_its_body_in_one_write() -> None:
    async def main() -> list[tuple[str, bytes, float | None]]:
        inner = Recording()
        stream = ReadableCheckStream(inner)
        await stream.write(HEAD, 5.0)
        assert inner.calls == []  # held for the body
        await stream.write(b"{}", 5.0)
        await stream.write(b"", 5.0)  # h11's end of a sized body
        await stream.read(65536, 60.0)
        return inner.calls

    assert asyncio.run(main()) == [("write", HEAD + b"{}", 5.0), ("read", b"", 60.0)]


def test_a_head_without_a_body_is_sent_before_the_first_read() -> None:
    head = b"GET /v1/models HTTP/1.1\r\nHost: a.test\r\n\r\n"

    async def main() -> list[tuple[str, bytes, float | None]]:
        inner = Recording()
        stream = ReadableCheckStream(inner)
        await stream.write(head, 5.0)
        await stream.write(b"", 5.0)
        await stream.read(65536, 60.0)
        return inner.calls

    assert asyncio.run(main()) == [("write", head, 5.0), ("read", b"", 60.0)]


def test_other_writes_go_out_at_once_and_a_held_head_is_dropped_on_close() -> None:
    """Bytes that are not an HTTP/1.1 head (a body chunk, another protocol) are never held."""

    async def main() -> list[tuple[str, bytes, float | None]]:
        inner = Recording()
        stream = ReadableCheckStream(inner)
        await stream.write(b"chunk ending like a head\r\n\r\n", 1.0)
        await stream.write(HEAD, 2.0)
        await stream.aclose()
        return inner.calls

    assert asyncio.run(main()) == [("write", b"chunk ending like a head\r\n\r\n", 1.0), ("close", b"", None)]


def test_requests_through_the_real_pool_arrive_whole_and_reuse_connections() -> None:
    """Over sockets: every request's head and body reach the server intact, concurrently, and
    the pool reuses its keep-alive connections (no more than the concurrency)."""
    received: list[bytes] = []
    peers: set[object] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.add(writer.get_extra_info("peername"))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                received.append(await reader.readexactly(length))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def main() -> list[str]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = httpx.URL(f"http://127.0.0.1:{port}/v1/chat/completions")
        async with server, httpx.AsyncClient() as client:
            transport = transport_for(client, url)

            async def post(i: int) -> str:
                request = httpx.Request("POST", url, content=f'{{"n":{i}}}'.encode())
                response = await transport.handle_async_request(request)
                return (await response.aread()).decode()

            answers: list[str] = []
            for wave in range(5):
                answers += await asyncio.gather(*(post(wave * 8 + i) for i in range(8)))
            return answers

    assert asyncio.run(main()) == ["ok"] * 40
    assert sorted(received) == sorted(f'{{"n":{i}}}'.encode() for i in range(40))
    assert len(peers) <= 8


class CountingPoller:
    """The pool's `poll` object, counting the polls (select.poll objects take no attributes)."""

    def __init__(self, inner: object) -> None:
        self.inner, self.polls = inner, 0

    def register(self, fd: int, events: int) -> None:
        self.inner.register(fd, events)  # type: ignore[attr-defined]

    def unregister(self, fd: int) -> None:
        self.inner.unregister(fd)  # type: ignore[attr-defined]

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        self.polls += 1
        return self.inner.poll(timeout)  # type: ignore[attr-defined,no-any-return]


def test_one_poll_per_walk_finds_the_idle_connection_the_server_closed() -> None:
    """Three idle connections, the server closes one: one walk over the pool polls once, drops
    exactly that one, keeps the others, and answers single questions afterwards as before."""
    from tier_router.transport import ReadableCheckBackend

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                if body == b"wait":
                    await asyncio.sleep(0.2)  # keeps the three requests on three connections
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
                if body == b"close":
                    await asyncio.sleep(0.05)  # closed once the pool holds it idle, as keep-alive ends
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = httpx.URL(f"http://127.0.0.1:{port}/v1/chat/completions")
        async with server, httpx.AsyncClient() as client:
            transport = transport_for(client, url)
            pool = transport._pool  # type: ignore[attr-defined]
            backend = pool._network_backend
            assert isinstance(backend, ReadableCheckBackend)

            async def post(body: bytes) -> str:
                response = await transport.handle_async_request(httpx.Request("POST", url, content=body))
                return (await response.aread()).decode()

            assert await asyncio.gather(post(b"wait"), post(b"wait"), post(b"wait")) == ["ok"] * 3
            assert len(pool.connections) == 3
            assert await post(b"close") == "ok"
            assert len(pool.connections) == 3
            streams = {c: c._connection._network_stream for c in pool.connections}
            for _ in range(100):
                if any(s.get_extra_info("is_readable") for s in streams.values()):
                    break
                await asyncio.sleep(0.01)
            [closed] = [c for c, s in streams.items() if s.get_extra_info("is_readable")]
            counting = backend.readiness.poller = CountingPoller(backend.readiness.poller)
            closing = pool._assign_requests_to_connections()
            assert closing == [closed]
            assert closed not in pool.connections
            assert len(pool.connections) == 2
            assert counting.polls == 1
            assert backend.readiness.ready is None  # outside a walk: each stream polls its own socket
            assert not any(s.get_extra_info("is_readable") for c, s in streams.items() if c is not closed)
            await pool._close_connections(closing)
            assert await post(b"again") == "ok"

    asyncio.run(main())


def test_a_held_head_that_cannot_be_written_still_lets_the_answer_be_read() -> None:
    """httpcore reads the answer after a failed request write (a server may refuse early and
    close): a head that fails when it goes out, at the first read, is treated alike."""

    class Refusing(Recording):
        async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
            raise httpcore.WriteError("connection reset")

    async def main() -> bytes:
        stream = ReadableCheckStream(Refusing())
        await stream.write(b"GET /v1/models HTTP/1.1\r\nHost: a.test\r\n\r\n", 5.0)
        return await stream.read(65536, 60.0)

    assert asyncio.run(main()).startswith(b"HTTP/1.1 200 OK")
