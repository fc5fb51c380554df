"""Stop the fallback chain for clients that have hung up.

Until a response starts, uvicorn and Starlette do not tell the app that its client is gone:
without this, a client that gives up on a slow completion or a held-back stream would still
have the chain run — and paid for — on its behalf.

Noticing a disconnect takes a task that sits in `receive()`. Most answers come back long
before anyone gives up, so only requests still running after `after` seconds get one; one
sweeper task per process (alive only while requests are in flight) finds them. A request that
finishes sooner costs two dict operations: no timer, no task. (A timer per request was the
router's most expensive single step at concurrency 32 — bench/RESULTS.md, "Proxy overhead".)
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from tier_router.errors import ClientGone

__all__ = ["ClientGone", "DisconnectWatch"]


class Watched:
    """One request in flight; a context manager around the work done on the client's behalf."""

    __slots__ = ("_owner", "_receive", "_task", "gone", "started", "watcher")

    def __init__(self, owner: DisconnectWatch, receive: Any, task: asyncio.Task[Any], started: float) -> None:
        self._owner = owner
        self._receive = receive
        self._task = task
        self.started = started
        self.watcher: asyncio.Task[None] | None = None
        self.gone = False

    def __enter__(self) -> Watched:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._owner.in_flight.pop(self, None)
        if self.watcher is not None:
            self.watcher.cancel()
        if self.gone and exc_type is asyncio.CancelledError:
            self._task.uncancel()  # our own cancellation, not the server's: report it as ClientGone
            raise ClientGone from None

    async def wait_for_disconnect(self) -> None:
        """The body has been read, so `receive()` only returns on a disconnect (or, on Mangum,
        once the response is complete — by then this watcher has been cancelled)."""
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        self._task.cancel()


class Unwatched:
    """For Lambda through Mangum: the function never hears of a client disconnect (Mangum's
    `receive` only says "disconnect" once the response is complete), so there is nothing to
    watch — and no sweeper left pending in a loop that stops between invocations."""

    def __enter__(self) -> Unwatched:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


UNWATCHED = Unwatched()


class DisconnectWatch:
    """`with watch.request(scope, receive): ...` — raises ClientGone if the client left meanwhile."""

    def __init__(self, after: float = 0.25) -> None:
        self.after = after
        self.in_flight: dict[Watched, None] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def request(self, scope: Any, receive: Any) -> Watched | Unwatched:
        """Must be called from the task that does the work (it is what gets cancelled)."""
        if "aws.event" in scope:
            return UNWATCHED
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None, "called outside a task"
        watched = Watched(self, receive, task, loop.time())
        self.in_flight[watched] = None
        sweeper = self._sweeper
        if sweeper is None or sweeper.done() or sweeper.get_loop() is not loop:
            # (An app used from more than one event loop: a sweeper of a stopped loop never wakes.)
            self._sweeper = loop.create_task(self._sweep())
        return watched

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while self.in_flight:
            await asyncio.sleep(self.after)
            cutoff = loop.time() - self.after
            for watched in list(self.in_flight):
                if watched.watcher is None and watched.started <= cutoff:
                    watched.watcher = loop.create_task(watched.wait_for_disconnect())
