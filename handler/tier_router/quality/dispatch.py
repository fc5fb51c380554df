"""How a sample leaves the request on Lambda: an asynchronous invocation of this same function.

On Lambda (behind Mangum) the container is frozen as soon as an invocation returns, so a
judgement cannot run in a background task after the response: it would stall until the next
request, or be lost with the container. Instead the answering invocation queues a judge event
for its own function (one `Invoke` call, `aws.invoke`), and `lambda_entry` runs the event in
an invocation of its own:

    {"tier_router": "judge", "sample": Sample.as_event()}   ->   Judging.run(Sample.from_event(...))

    dispatch = lambda_dispatch(settings, http_client)   # None when not on Lambda
    await dispatch(sample)                              # queued (202), or InvokeError

`Judging` (quality.runner) takes the dispatch at construction; None means its own background
task on this process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tier_router.quality.sample import Sample

if TYPE_CHECKING:
    import httpx

    from tier_router.aws.invoke import LambdaInvoker
    from tier_router.settings import Settings

Dispatch = Callable[[Sample], Awaitable[None]]
EVENT_KIND = "judge"
"""The `tier_router` field of a judge event (`lambda_entry` tells events apart by it)."""


def judge_event(sample: Sample) -> dict[str, Any]:
    return {"tier_router": EVENT_KIND, "sample": sample.as_event()}


class LambdaDispatch:
    """`await dispatch(sample)`: one asynchronous invocation of this function with the sample's
    judge event. Raises `aws.invoke.InvokeError` (`EventTooLarge` for a sample over the
    asynchronous payload limit: nothing is sent)."""

    def __init__(self, invoker: LambdaInvoker) -> None:
        self.invoker = invoker

    def __repr__(self) -> str:
        return f"LambdaDispatch({self.invoker!r})"

    async def __call__(self, sample: Sample) -> None:
        await self.invoker.invoke_event(judge_event(sample))


def lambda_dispatch(settings: Settings, http_client: httpx.AsyncClient) -> Dispatch | None:
    """The dispatch of a process on Lambda behind Mangum (`settings.judges_by_invocation`), on
    the shared client; None anywhere else (the Lambda Web Adapter forwards HTTP events only)."""
    if not settings.judges_by_invocation:
        return None
    from tier_router.aws.invoke import lambda_invoker  # loaded only where it is used

    return LambdaDispatch(lambda_invoker(settings, http_client))
