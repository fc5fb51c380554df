"""Servers and ports on 127.0.0.1: any ASGI app under a real uvicorn server in a background
thread, and a free port.

Why real uvicorn instead of an in-process transport: the router's timeouts, connection reuse and
streaming only show their true behaviour over real sockets, and the fakes' ``reset``/``stream_cut``
faults act on the TCP connection itself.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

PORT_SLICE = 1000
"""Ports per test process in `free_port`'s range (one slice per pytest-xdist worker)."""
LOWEST_PORT = 20000


def ephemeral_ports() -> tuple[int, int]:
    """The range the OS hands out for `bind(("...", 0))` and outgoing connections (Linux: from
    /proc; elsewhere the IANA range that macOS and Windows use)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def worker_slice() -> range | None:
    """This test process's own ports below the ephemeral range: pytest-xdist worker `gwN` gets
    slice N + 1, a run without workers slice 0. None if the range leaves no room."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    slices = (ephemeral_ports()[0] - LOWEST_PORT) // PORT_SLICE
    if slices < 1:
        return None
    start = LOWEST_PORT + (index % slices) * PORT_SLICE
    return range(start, start + PORT_SLICE)


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))  # no SO_REUSEADDR: a port in TIME_WAIT is refused too
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on now, for a server in another process to bind (until one
    does, connecting to it is refused at once).

    Not a port from the OS (`bind` to port 0, then released): under pytest-xdist another worker's
    server or outgoing connection can be handed that same port before our child process binds
    it — the child then fails to start, or the test talks to someone else's server. So the port
    comes from below the OS's ephemeral range, where the OS never hands one out, in a slice of
    its own per worker (`worker_slice`), picked at random and checked free."""
    ports = worker_slice()
    if ports is not None:
        for port in random.sample(ports, 50):
            if bindable(port):
                return port
    with socket.socket() as sock:  # no room below the ephemeral range, or the slice is taken
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
