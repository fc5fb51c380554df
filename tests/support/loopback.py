"""Servers and ports on 127.0.0.1: any ASGI app under a real uvicorn server in a background
thread, and a free port.

Why real uvicorn instead of an in-process transport: the router's timeouts, connection reuse and
streaming only show their true behaviour over real sockets, and the fakes' ``reset``/``stream_cut``
faults act on the TCP connection itself.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


def free_port() -> int:
    """A loopback port nothing listens on now (bound, then released): a server may take it, and
    until one does, connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def run_uvicorn_in_thread(
    app: Any,
    *,
    port: int = 0,
    lifespan: str = "auto",
    graceful_shutdown_s: int = 1,
    startup_timeout_s: float = 10.0,
) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 and yield ``"http://127.0.0.1:PORT"`` once it accepts connections.

    We bind the socket ourselves, so ``port=0`` yields the real port with no race. On exit the server
    is asked to stop; requests still running after ``graceful_shutdown_s`` (e.g. a stalled fake
    stream) are cancelled, so a test teardown never hangs on them.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=graceful_shutdown_s,
        # Longer than any client's keep-alive expiry (httpx: 5 s): with equal values a client can
        # reuse a connection at the instant the server closes it, and a POST then fails.
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn exited during startup (see its log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start within {startup_timeout_s}s")
            time.sleep(0.005)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=graceful_shutdown_s + 5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()
