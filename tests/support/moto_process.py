"""The repo's moto DynamoDB server (`tests.support.moto_server.MotoServer`), in its own process.

In the test process, moto shares the GIL with the clients, the fake provider and their
threads: under a concurrent mix its calls took over a second, past the router's store
deadline, and the router rightly failed open — which is not what these tests are about. In a
child process it has a core to itself.

    python tests/support/moto_process.py     prints the endpoint, then reads table names on
                                             stdin and answers "ok <name>" once each exists
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class MotoProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()
        if not self.endpoint.startswith("http://"):
            raise RuntimeError(f"moto did not start: {self.endpoint!r}")

    def create_table(self, name: str | None = None) -> str:
        name = name or f"lifecycle-{uuid.uuid4().hex[:10]}"
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != f"ok {name}":
            raise RuntimeError(f"moto could not create {name}: {answer!r}")
        return name

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@contextlib.contextmanager
def moto_process() -> Iterator[MotoProcess]:
    server = MotoProcess()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.moto_server import MotoServer

    server = MotoServer().start()
    print(server.endpoint, flush=True)
    for line in sys.stdin:
        name = line.strip()
        if name:
            server.create_table(name)
            print(f"ok {name}", flush=True)
    server.stop()


if __name__ == "__main__":
    main()
