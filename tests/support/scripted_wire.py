"""An AWS endpoint on a script, for failures a real server cannot produce on demand
(throttling, 5xx, dropped connections): an `httpx.MockTransport` handler that answers from a
list of answers (the last one repeats) and remembers every request, plus a `sleep` that
records the client's backoff instead of waiting."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class ScriptedWire:
    """`answers`: a response, an exception to raise, or a function of the request."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def http_client(self) -> httpx.AsyncClient:
        """An httpx client whose every request this script answers."""
        return httpx.AsyncClient(transport=httpx.MockTransport(self))

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]
