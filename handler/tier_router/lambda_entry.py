"""AWS Lambda entry point (Function URL or API Gateway HTTP API v2 events), and the scheduled
health probe (EventBridge).

`lifespan="off"`: with Mangum's default, startup/shutdown would run on every invocation.
The app, its rules and its shared httpx client are built at import (the init phase) and
reused by every warm invocation. Mangum buffers the response, so a `stream: true` request
gets its complete SSE body at once; see docs/aws.md for true streaming on Lambda. Each
request is settled and logged before Mangum returns (`lifecycle` never defers work on
Lambda); the log is flushed here so nothing stays buffered when the container freezes.

An EventBridge scheduled event (`{"source": "aws.events", ...}`, template.yaml's
`ProbeSchedule`) or `{"tier_router": "probe"}` (a manual `aws lambda invoke`) runs the health
probe instead (`tier_router.probe`): every provider checked once, recorded on the breakers in
the shared store, the results returned (and each unhealthy provider logged as a
`ProviderUnhealthy` event).

A judge event (`{"tier_router": "judge", "sample": ...}`, docs/quality-loop.md "Judging on
Lambda") is a sampled request's judgement, queued by the invocation that answered it
(`quality.dispatch`): it runs `Judging.run` here, and returns a small summary. A malformed
one is refused with the reason (logged, returned, never raised: an asynchronous invocation
that raises is only retried, and the same event would fail the same way). After an HTTP
event, work the request left pending (the judge event's `Invoke`) is finished before the
invocation returns (within DRAIN_S): a frozen container would stall it.

The probe and the judge's event parsing are imported by the events that need them, not at
init: an HTTP request's cold start does not pay for them (docs/coldstart.md).
"""

import gc

# Init (these imports build the app) allocates ~36,000 objects that live as long as the process:
# modules, classes, functions, the app. With the cyclic collector on, every 700 allocations it
# walks the young ones and finds them alive (~80 collections, ~10 ms of a cold start's CPU:
# bench/RESULTS.md, "Issue 18 (2nd session): cold start"), so it is off while they run.
collecting = gc.isenabled()
gc.disable()
try:
    import asyncio
    import logging
    from typing import Any

    from mangum import Mangum

    from tier_router.asgi import app
    from tier_router.quality.dispatch import EVENT_KIND
finally:
    if collecting:
        gc.enable()

log = logging.getLogger("tier_router")
_mangum = Mangum(app, lifespan="off")
DRAIN_S = 5.0
"""At most this long after the response is built for the request's pending work (the judge
event's `Invoke` takes at most two 2 s attempts)."""


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        if is_probe_event(event):
            return run_probe()
        if is_router_event(event):
            return run_router_event(event)
        result = _mangum(event, context)
        drain()
        return result
    finally:
        app.gateway.access_log.flush()
        if app.gateway.tracing is not None:  # queued spans, before the container freezes (bounded)
            app.gateway.tracing.flush()


def is_probe_event(event: object) -> bool:
    return isinstance(event, dict) and (
        event.get("source") == "aws.events" or event.get("tier_router") == "probe"
    )


def is_router_event(event: object) -> bool:
    """An event for the router itself (`{"tier_router": ...}`), not an HTTP request."""
    return isinstance(event, dict) and "tier_router" in event


def drain() -> None:
    """Finish what the request left pending on Mangum's loop (the loop is idle between
    invocations and the container is frozen: a task left there would not run)."""
    loop = asyncio.get_event_loop()
    loop.run_until_complete(app.gateway.lifecycle.drainer.drain(DRAIN_S))


def run_router_event(event: dict[str, Any]) -> dict[str, Any]:
    kind = event.get("tier_router")
    if kind == EVENT_KIND:
        return run_judge(event)
    return refused(f"unknown tier_router event {str(kind)[:40]!r}: expected 'probe' or 'judge'", None)


def run_judge(event: dict[str, Any]) -> dict[str, Any]:
    """One judgement of the event's sample, on Mangum's loop; a summary of what was done."""
    from tier_router.quality.sample import Sample

    judging = app.gateway.quality.judging
    if judging is None:
        return refused("judging is off here: the rules file sets no quality.judge and quality.reference")
    try:
        sample = Sample.from_event(event.get("sample"))
    except ValueError as exc:
        return refused(f"malformed judge event: {exc}")
    done = {"tier_router": EVENT_KIND, "request_id": sample.request_id}
    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(judging.run(sample))
    except Exception:  # not raised: Lambda would only run the same event again
        log.exception("judging request %s failed", sample.request_id)
        return {**done, "judged": False, "error": "the judgement failed (logged)"}
    return {**done, "judged": True}


def refused(reason: str, kind: str | None = EVENT_KIND) -> dict[str, Any]:
    """The summary of an event not run (logged: nobody reads an asynchronous invocation's result)."""
    log.warning("tier_router event refused: %s", reason)
    if kind == EVENT_KIND:
        return {"tier_router": kind, "judged": False, "error": reason}
    return {"tier_router": kind, "error": reason}


def run_probe() -> dict[str, Any]:
    """The probe on the app's own client, keys and breakers, on Mangum's event loop (where the
    shared client's pooled connections live)."""
    from tier_router.probe import probe_providers, summary

    gateway = app.gateway
    board = gateway.breakers.board if gateway.breakers is not None else None
    loop = asyncio.get_event_loop()
    results = loop.run_until_complete(probe_providers(gateway.rules, gateway.client, gateway.keys, board))
    for result in results:
        if not result.healthy:
            gateway.access_log.event(
                "ProviderUnhealthy", provider=result.provider, outcome=str(result.outcome)
            )
    return summary(results)


try:  # Lambda's managed Python runtime only: SnapStart's restore hooks (tier_router.snapstart)
    import snapshot_restore_py  # type: ignore[import-not-found]
except ImportError:
    pass
else:
    from tier_router import snapstart

    snapstart.register(app, snapshot_restore_py)
