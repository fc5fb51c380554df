"""A TCP proxy on 127.0.0.1 that delays every chunk the client sends: a slow network between
the router and its state store (or anything else), without touching either side.

Each chunk from the client waits `delay_s` before it is forwarded (chunks of one connection
stay in order; connections are independent, so concurrent calls are delayed concurrently).
`arrived` counts chunks received from clients — poll it to know that the router has started
talking to the store — and `pending` those still being held back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class SlowProxy:
    def __init__(self, target_host: str, target_port: int, delay_s: float) -> None:
        self.target = (target_host, target_port)
        self.delay_s = delay_s
        self.arrived = 0
        self.pending = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="slow-proxy")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SlowProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("slow proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        with contextlib.suppress(asyncio.CancelledError):  # the proxy stopping: not an error
            await asyncio.gather(
                self._pipe(client_r, upstream_w, delayed=True),
                self._pipe(upstream_r, client_w, delayed=False),
                return_exceptions=True,
            )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool) -> None:
        try:
            while data := await reader.read(65536):
                if delayed:
                    self.arrived += 1
                    self.pending += 1
                    try:
                        await asyncio.sleep(self.delay_s)
                    finally:
                        self.pending -= 1
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()


@contextlib.contextmanager
def slow_proxy(endpoint: str, delay_s: float) -> Iterator[SlowProxy]:
    """`endpoint`: "http://host:port" of the real service."""
    host, port = endpoint.removeprefix("http://").split(":")
    proxy = SlowProxy(host, int(port), delay_s).start()
    try:
        yield proxy
    finally:
        proxy.stop()
