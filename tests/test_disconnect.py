"""DisconnectWatch: long-running work is cancelled when the client hangs up (ClientGone); short
work never gets a watcher; a cancellation that is not ours stays a cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tier_router.disconnect import ClientGone, DisconnectWatch

AFTER = 0.05
SCOPE = {"type": "http"}


class Client:
    """An ASGI `receive` whose disconnect happens when the test says so."""

    def __init__(self) -> None:
        self.left = asyncio.Event()
        self.receives = 0

    async def receive(self) -> dict[str, Any]:
        self.receives += 1
        await self.left.wait()
        return {"type": "http.disconnect"}


def test_fast_work_gets_no_watcher() -> None:
    async def main() -> None:
        watch = DisconnectWatch(AFTER)
        client = Client()
        for _ in range(100):
            with watch.request(SCOPE, client.receive) as watched:
                await asyncio.sleep(0)
            assert watched.watcher is None
        assert watch.in_flight == {}
        assert client.receives == 0  # nobody ever sat in receive()
        await asyncio.sleep(AFTER * 3)
        assert watch._sweeper is not None
        assert watch._sweeper.done()

    asyncio.run(main())


def test_a_client_that_leaves_cancels_slow_work_as_client_gone() -> None:
    async def main() -> None:
        watch = DisconnectWatch(AFTER)
        client = Client()
        cancelled = asyncio.Event()

        async def slow_work() -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async def leave_soon() -> None:
            await asyncio.sleep(AFTER * 3)
            client.left.set()

        leaving = asyncio.create_task(leave_soon())
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ClientGone), watch.request(SCOPE, client.receive):
            await slow_work()
        assert cancelled.is_set()
        assert loop.time() - started < 2  # seconds, not the 30 s the work would take
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]  # not left cancelled
        assert watch.in_flight == {}
        await leaving

    asyncio.run(main())


def test_slow_work_for_a_client_that_stays_completes_and_its_watcher_stops() -> None:
    async def main() -> None:
        watch = DisconnectWatch(AFTER)
        client = Client()
        with watch.request(SCOPE, client.receive) as watched:
            await asyncio.sleep(AFTER * 4)
            result = "answer"
        assert result == "answer"
        assert watched.watcher is not None  # it was watched...
        await asyncio.sleep(0)
        assert watched.watcher.cancelled()  # ...and the watcher is gone with the request
        assert not watched.gone

    asyncio.run(main())


def test_a_cancellation_that_is_not_ours_stays_a_cancellation() -> None:
    async def main() -> None:
        watch = DisconnectWatch(AFTER)
        client = Client()

        async def handler() -> None:
            with watch.request(SCOPE, client.receive):
                await asyncio.sleep(30)

        task = asyncio.create_task(handler())
        await asyncio.sleep(AFTER * 3)
        task.cancel()  # e.g. the server shutting down
        with pytest.raises(asyncio.CancelledError):
            await task
        assert watch.in_flight == {}

    asyncio.run(main())


def test_a_new_event_loop_gets_its_own_sweeper() -> None:
    """Mangum may run each Lambda invocation in a new loop; the watch object lives on."""
    watch = DisconnectWatch(AFTER)

    async def invocation() -> None:
        client = Client()

        async def leave_soon() -> None:
            await asyncio.sleep(AFTER * 3)
            client.left.set()

        leaving = asyncio.create_task(leave_soon())
        with pytest.raises(ClientGone), watch.request(SCOPE, client.receive):
            await asyncio.sleep(30)
        await leaving

    # Like Mangum: run_until_complete leaves the first loop's sweeper pending, not cancelled.
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        first.run_until_complete(invocation())
        # Waits 30 s (and fails) if the first loop's sleeping sweeper were taken as running:
        second.run_until_complete(asyncio.wait_for(invocation(), timeout=5))
    finally:
        for loop in (first, second):
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()


def test_lambda_invocations_are_not_watched() -> None:
    """Mangum never reports a disconnect before the response: no watcher, no sweeper."""

    async def main() -> None:
        watch = DisconnectWatch(AFTER)
        client = Client()
        with watch.request({"type": "http", "aws.event": {}}, client.receive):
            await asyncio.sleep(AFTER * 3)
        assert watch._sweeper is None
        assert client.receives == 0

    asyncio.run(main())
