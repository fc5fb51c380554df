"""The fake providers on real sockets: `tests.support.fake_upstream`'s fakes under uvicorn on
127.0.0.1 — `fake-a` and `fake-b` (OpenAI-compatible) and `fake-anthropic` — each driven
through its control API (`POST /_control`, `GET /_stats`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.fake_upstream import make_fake_upstream
from tests.support.loopback import run_uvicorn_in_thread


@dataclass
class Fake:
    """One running fake and its control API."""

    name: str
    url: str
    http: httpx.Client

    def control(self, **faults: Any) -> None:
        """Replace the fault config (stats are kept); see `tests.support.fake_upstream.Faults`."""
        self.http.post(self.url + "/_control", json=faults).raise_for_status()

    def reset(self) -> None:
        """Mode ok, stats cleared."""
        self.http.post(self.url + "/_control", json={"reset": True}).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self.http.get(self.url + "/_stats")
        response.raise_for_status()
        return response.json()

    @property
    def requests(self) -> int:
        """Provider requests received since the last reset."""
        return int(self.stats()["requests"])

    @property
    def last(self) -> dict[str, Any]:
        """The last provider request this fake received (method, path, headers, parsed body)."""
        last = self.stats()["last_request"]
        assert last is not None, f"{self.name} received no request"
        return last

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 3.0) -> dict[str, Any]:
        """Poll `/_stats` until `predicate(stats)` holds; the last stats either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if predicate(stats) or time.monotonic() > deadline:
                return stats
            time.sleep(0.02)


@dataclass
class FakeProviders:
    a: Fake  # OpenAI-compatible
    b: Fake  # OpenAI-compatible
    anthropic: Fake

    @property
    def all(self) -> tuple[Fake, Fake, Fake]:
        return (self.a, self.b, self.anthropic)

    def reset(self) -> FakeProviders:
        for fake in self.all:
            fake.reset()
        return self


@contextlib.contextmanager
def fake_providers() -> Iterator[FakeProviders]:
    """The three fakes, each under uvicorn in a thread, stopped on exit."""
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(httpx.Client(timeout=5.0))

        def start(kind: str, name: str) -> Fake:
            url = stack.enter_context(run_uvicorn_in_thread(make_fake_upstream(kind, name=name)))  # type: ignore[arg-type]
            return Fake(name, url, http)

        yield FakeProviders(
            start("openai", "fake-a"), start("openai", "fake-b"), start("anthropic", "fake-anthropic")
        )
