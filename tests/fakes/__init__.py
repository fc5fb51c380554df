"""Fake OpenAI / Anthropic upstreams for integration tests and benchmarks.

- ``tests.fakes.upstream``: ``make_fake_upstream(kind, name=...)`` (raw ASGI app with a fault-injection
  control API) and the CLI ``python -m tests.fakes.upstream --kind openai --port 9001``.
- ``tests.fakes.server``: ``run_uvicorn_in_thread(app)`` - a real uvicorn server on 127.0.0.1.

Names are resolved lazily so that ``python -m tests.fakes.upstream`` does not import the module twice.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FakeUpstream", "make_fake_upstream", "run_uvicorn_in_thread"]


def __getattr__(name: str) -> Any:
    if name in ("FakeUpstream", "make_fake_upstream"):
        from tests.fakes import upstream

        return getattr(upstream, name)
    if name == "run_uvicorn_in_thread":
        from tests.fakes import server

        return server.run_uvicorn_in_thread
    raise AttributeError(name)
