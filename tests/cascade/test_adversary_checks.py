"""Issue 15, the adversary: hostile schemas and answers against the event loop.

A request's `response_format` schema (or a tool's `parameters`) is the client's; the answer is
the model's, which the client can steer. Neither may hold the router's event loop, or a worker
thread, for long: `cascade.checked` and `validators.time_limit`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tier_router.cascade import INLINE_TIME_S, checked
from tier_router.validators import Ask, Choice, Reply, ToolCall, schemas
from tier_router.validators.json_output import JsonOutput
from tier_router.validators.time_limit import OutOfTime, tick, time_limit
from tier_router.validators.tool_args import ToolArgs

# Each level: an `anyOf` whose first branch reads the whole subtree before it fails (allOf:
# items, then maxItems), so the second reads it again: 2^depth. 250 characters of schema.
EXPLODING = {
    "definitions": {
        "n": {
            "anyOf": [
                {"allOf": [{"type": "array", "items": {"$ref": "#/definitions/n"}}, {"maxItems": 0}]},
                {"type": "array", "items": {"$ref": "#/definitions/n"}},
                {"type": "string"},
            ]
        }
    },
    "$ref": "#/definitions/n",
}


def nested(depth: int) -> str:
    return "[" * depth + '"s"' + "]" * depth  # 20 levels: ~15 s unchecked, 24: ~1 min


def json_schema(schema: Any) -> Ask:
    return Ask({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})


def test_a_schema_check_that_explodes_runs_out_of_time_and_the_answer_passes() -> None:
    unfinished = schemas.STATS.unfinished

    started = time.perf_counter()
    with time_limit(0.2):
        found = schemas.violation(EXPLODING, json.loads(nested(30)))
    elapsed = time.perf_counter() - started

    assert found is None
    assert elapsed < 1.0
    assert schemas.STATS.unfinished == unfinished + 1
    assert schemas.violation(EXPLODING, json.loads(nested(30))) is None  # CHECK_TIME_S by default
    assert schemas.violation(EXPLODING, 5) is not None  # a quick check still decides


def test_an_inner_time_limit_never_extends_an_outer_one() -> None:
    with time_limit(0.05), time_limit(10):
        time.sleep(0.06)
        try:
            tick()
        except OutOfTime:
            return
    raise AssertionError("the outer limit was extended")


def test_a_cached_schema_checked_on_the_event_loop_is_held_to_the_inline_limit() -> None:
    """The second request with the same schema is checked inline: it used to run there for as
    long as the schema made it (~15 s for this 43-character answer), every other request
    stalled meanwhile."""
    ask, checks = json_schema(EXPLODING), (JsonOutput(),)

    async def scenario() -> float:
        await checked(checks, Reply((Choice('"warm"'),)), ask)  # compiled, in a worker thread
        assert schemas.is_compiled(EXPLODING)
        started = time.perf_counter()
        assert await checked(checks, Reply((Choice(nested(20)),)), ask) is None
        return time.perf_counter() - started

    assert asyncio.run(scenario()) < INLINE_TIME_S + 0.1


def test_a_large_answer_is_checked_off_the_event_loop() -> None:
    """A 1 MB array checked item by item against a large enum (the schema already compiled):
    ~13 s of work, once inline. The loop keeps its pace; the check stops at CHECK_TIME_S."""
    enum = [f"v{i:05d}" for i in range(1500)]
    tool = {"type": "object", "properties": {"xs": {"type": "array", "items": {"enum": enum}}}}
    ask, checks = Ask(tools={"pick": tool}), (ToolArgs(),)
    arguments = json.dumps({"xs": ["v01499"] * 120_000})

    async def scenario() -> tuple[float, float]:
        await checked(checks, Reply((Choice("", (), None),)), ask)
        schemas.violation(tool, {"xs": []})
        lag = 0.0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal lag
            while not done.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                lag = max(lag, time.perf_counter() - before - 0.01)

        running = asyncio.create_task(ticker())
        started = time.perf_counter()
        await checked(checks, Reply((Choice("", (ToolCall("pick", arguments),), "tool_calls"),)), ask)
        elapsed = time.perf_counter() - started
        done.set()
        await running
        return lag, elapsed

    lag, elapsed = asyncio.run(scenario())
    assert lag < 0.25, f"the event loop stalled {lag:.2f} s"
    assert elapsed < schemas.CHECK_TIME_S + 2.0


# -- reasons: no secret, whatever the schema, the tools or the answer are named ------------------

KEY = "sk-proj-AbCdEf0123456789xyz"  # shaped like a provider key (and SAFE_NAME: letters, digits, -)


def reasons(ask: Ask, *choices: Choice) -> list[str]:
    checks = (JsonOutput(), ToolArgs())
    found = [asyncio.run(checked(checks, Reply((choice,)), ask)) for choice in choices]
    return [failure.header() for failure in found if failure is not None]


def test_a_schema_property_shaped_like_a_provider_key_is_never_named() -> None:
    schema = {"type": "object", "properties": {KEY: {"type": "integer"}}, "required": [KEY]}

    shown = reasons(json_schema(schema), Choice("{}"), Choice(json.dumps({KEY: "text"})))

    assert len(shown) == 2
    assert all(KEY not in reason and "sk-" not in reason for reason in shown), shown


def test_a_tool_shaped_like_a_provider_key_is_never_named() -> None:
    tool = {"type": "object", "properties": {"a": {"type": "integer"}}}
    ask = Ask(tools={KEY: tool})

    shown = reasons(
        ask,
        Choice("", (ToolCall(KEY, '{"a": "x"}'),), "tool_calls"),
        Choice("", (ToolCall(KEY + "z", "{}"),), "tool_calls"),  # a tool the request did not offer
        Choice("", (ToolCall(KEY, "{not json " + KEY),), "tool_calls"),
    )

    assert len(shown) == 3
    assert all("sk-" not in reason for reason in shown), shown


def test_an_answer_echoing_a_secret_in_its_keys_or_values_is_never_quoted() -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
        "additionalProperties": {"type": "integer"},
        "patternProperties": {"^x": {"type": "integer"}},
    }
    answers = [
        {KEY: "v"},  # an undeclared key
        {"x" + KEY: "v"},  # a key matched by a pattern
        {"items": [1, KEY]},  # a value
        {"items." + KEY: 1, "a[" + KEY + "]": "v"},  # keys that look like paths
    ]

    shown = reasons(json_schema(schema), *(Choice(json.dumps(a)) for a in answers))

    assert len(shown) == len(answers)
    assert all("sk-" not in reason and "AbCdEf" not in reason for reason in shown), shown


# -- a 1 MB held answer, early checks on ----------------------------------------------------------


def test_a_megabyte_held_answer_with_early_checks_keeps_the_loop_going() -> None:
    """A held stream of 1 MB of text in 8-character chunks (131,072 of them), every early check
    on (refusal, must_not_match, max_length, json): the early checks look O(log n) times, the
    final check runs in a worker thread, and the event loop never waits long."""
    from tier_router.holdback import Assembly, HeldAnswer
    from tier_router.validators.length import MaxLength
    from tier_router.validators.patterns import MustNotMatch
    from tier_router.validators.refusal import Refusal

    checks = (Refusal(), MustNotMatch("(?i)forbidden"), MaxLength(2_000_000), JsonOutput())
    ask = Ask({"type": "json_object"})
    text = '{"story": "' + "a cat sat " * 104_857 + '"}'
    state = Assembly()

    async def frames() -> Any:
        for i in range(0, len(text), 8):
            chunk = {
                "id": "c",
                "choices": [{"index": 0, "delta": {"content": text[i : i + 8]}, "finish_reason": None}],
            }
            state.observe(chunk)
            if i % 4096 == 0:
                await asyncio.sleep(0)  # a provider's reads
            yield b"x"
        state.observe({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})

    async def scenario() -> tuple[Any, float, float]:
        lag, done = 0.0, asyncio.Event()

        async def ticker() -> None:
            nonlocal lag
            while not done.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.005)
                lag = max(lag, time.perf_counter() - before - 0.005)

        running = asyncio.create_task(ticker())
        started = time.perf_counter()
        verdict = await HeldAnswer(frames(), state, checks).verdict(ask, complete=lambda: True)
        elapsed = time.perf_counter() - started
        done.set()
        await running
        return verdict, elapsed, lag

    verdict, elapsed, lag = asyncio.run(scenario())
    assert verdict is None
    assert elapsed < 5.0
    assert lag < 0.1, f"the event loop stalled {lag:.3f} s"
