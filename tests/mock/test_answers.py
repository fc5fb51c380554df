"""The mock provider on its own (its transport, no router): what it answers for JSON, tools,
`n`, token limits and streams; its flaws on demand, drawn deterministically; its options."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from tier_router.providers.mock import MockTransport, check_url
from tier_router.providers.mock.flaws import PREFACE, REFUSAL

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city", "days"],
        },
    },
}
JSON_OBJECT = {"type": "json_object"}


def post_all(
    bodies: list[dict[str, Any]], url: str = "mock://m", transport: MockTransport | None = None
) -> list[httpx.Response]:
    """Each body POSTed in turn to the mock at `url` (its options in the query), on one client."""
    base, _, query = url.partition("?")

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(mounts={"mock://": transport or MockTransport()}) as client:
            responses = []
            for body in bodies:
                response = await client.post(f"{base}/chat/completions?{query}", json=body)
                await response.aread()
                responses.append(response)
            return responses

    return asyncio.run(go())


def post(
    body: dict[str, Any], url: str = "mock://m", transport: MockTransport | None = None
) -> httpx.Response:
    return post_all([body], url, transport)[0]


def answer(text: str | list[Any] = "hello", url: str = "mock://m", **params: Any) -> dict[str, Any]:
    response = post({"model": "m", "messages": [{"role": "user", "content": text}], **params}, url)
    assert response.status_code == 200, response.text
    return response.json()


def chunks(response: httpx.Response) -> list[dict[str, Any]]:
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def content(completion: dict[str, Any], index: int = 0) -> str:
    return completion["choices"][index]["message"]["content"]


# ------------------------------------------------------------------------------ answers


def test_plain_text_is_the_canned_answer() -> None:
    completion = answer("hi there")
    assert content(completion) == "[m via mock:m] You said: hi there"
    assert completion["choices"][0]["finish_reason"] == "stop"


def test_json_object_gives_a_json_object() -> None:
    value = json.loads(content(answer(response_format=JSON_OBJECT)))
    assert value == {"answer": "[m via mock:m] You said: hello", "model": "m"}


def test_a_tool_call_then_text_after_the_tool_result() -> None:
    completion = answer(tools=[WEATHER])
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert set(json.loads(call["function"]["arguments"])) == {"city", "days"}
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    after = post({"model": "m", "messages": history, "tools": [WEATHER]}).json()["choices"][0]
    assert after["finish_reason"] == "stop"
    assert after["message"]["content"].endswith("The tool said: sunny")


def test_tool_choice_picks_the_function_and_none_turns_calls_off() -> None:
    other = {"type": "function", "function": {"name": "noop"}}
    named = {"type": "function", "function": {"name": "get_weather"}}
    call = answer(tools=[other, WEATHER], tool_choice=named)["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": call["function"]["arguments"]}
    assert (
        answer(tools=[other, WEATHER])["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "noop"
    )
    assert content(answer(tools=[WEATHER], tool_choice="none")).endswith("You said: hello")


def test_deprecated_functions_get_a_function_call() -> None:
    choice = answer(functions=[WEATHER["function"]])["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"]["name"] == "get_weather"
    assert set(json.loads(choice["message"]["function_call"]["arguments"])) == {"city", "days"}
    assert (
        answer(functions=[WEATHER["function"]], function_call="none")["choices"][0]["finish_reason"] == "stop"
    )


def test_n_choices_differ_and_usage_counts_them_all() -> None:
    one, three = answer(), answer(n=3)
    assert [c["index"] for c in three["choices"]] == [0, 1, 2]
    assert len({content(three, i) for i in range(3)}) == 3
    assert three == answer(n=3) | {"created": three["created"]}  # deterministic
    assert three["usage"]["completion_tokens"] > 2 * one["usage"]["completion_tokens"]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_a_token_limit_cuts_the_answer(field: str) -> None:
    long = "a fairly long question that the mock repeats back in full " * 3
    completion = answer(long, n=2, **{field: 5})
    for choice in completion["choices"]:
        assert choice["finish_reason"] == "length"
        assert len(choice["message"]["content"]) <= 20  # 5 tokens of ASCII
    assert completion["usage"]["completion_tokens"] <= 10
    assert answer("hi", max_tokens=500)["choices"][0]["finish_reason"] == "stop"
    call = answer(tools=[WEATHER], max_tokens=3)["choices"][0]
    assert call["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError, match=r"Expecting|Unterminated"):
        json.loads(call["message"]["tool_calls"][0]["function"]["arguments"])


def test_usage_counts_the_tools_and_the_schema_in_the_prompt() -> None:
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "s", "schema": WEATHER["function"]["parameters"]},
    }
    plain = answer()["usage"]
    assert answer(tools=[WEATHER])["usage"]["prompt_tokens"] > plain["prompt_tokens"] + 20
    assert answer(response_format=schema)["usage"]["prompt_tokens"] > plain["prompt_tokens"] + 20
    assert plain["total_tokens"] == plain["prompt_tokens"] + plain["completion_tokens"]


# ------------------------------------------------------------------------------- streams


def stream(**params: Any) -> list[dict[str, Any]]:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello you"}], "stream": True, **params}
    return chunks(post(body))


def test_a_streamed_tool_call_has_the_openai_shape() -> None:
    parts = stream(tools=[WEATHER], stream_options={"include_usage": True})
    first = parts[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["index"] == 0
    assert first["type"] == "function"
    assert first["id"].startswith("call_")
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    pieces = [c["choices"][0]["delta"]["tool_calls"][0] for c in parts[1:-2]]
    assert len(pieces) > 1
    assert all(set(p) == {"index", "function"} for p in pieces)
    assert json.loads("".join(p["function"]["arguments"] for p in pieces)) == json.loads(
        answer("hello you", tools=[WEATHER])["choices"][0]["message"]["tool_calls"][0]["function"][
            "arguments"
        ]
    )
    assert parts[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert parts[-1]["choices"] == []
    assert parts[-1]["usage"]["completion_tokens"] > 0


def test_streamed_choices_interleave_and_each_finishes() -> None:
    parts = stream(n=3)
    assert all(len(c["choices"]) == 1 for c in parts)
    indexes = [c["choices"][0]["index"] for c in parts]
    assert indexes[:6] == [0, 1, 2, 0, 1, 2]
    whole = answer("hello you", n=3)
    for i in range(3):
        mine = [c["choices"][0] for c in parts if c["choices"][0]["index"] == i]
        assert "".join(p["delta"].get("content") or "" for p in mine) == content(whole, i)
        assert [p["finish_reason"] for p in mine].count("stop") == 1
        assert mine[-1]["finish_reason"] == "stop"
    assert not any("usage" in c for c in parts)  # not asked for


# -------------------------------------------------------------------------------- flaws


def flawed(texts: list[str], url: str, model: str = "m") -> list[bool]:
    """For each text, whether the mock at `url` answered it with a flaw (JSON asked)."""
    bodies = [
        {"model": model, "messages": [{"role": "user", "content": t}], "response_format": JSON_OBJECT}
        for t in texts
    ]
    return [not is_clean_json(content(r.json())) for r in post_all(bodies, url)]


def is_clean_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def test_flaw_rate_one_with_json_always_breaks_json_and_zero_never() -> None:
    prompts = [f"question {i}" for i in range(40)]
    assert all(flawed(prompts, "mock://x?flaw_rate=1&flaws=json"))
    assert not any(flawed(prompts, "mock://x?flaw_rate=0"))
    assert not any(flawed(prompts, "mock://x"))
    bodies = [
        {"model": "m", "messages": [{"role": "user", "content": p}], "response_format": JSON_OBJECT}
        for p in prompts
    ]
    styles = {content(r.json())[:5] for r in post_all(bodies, "mock://x?flaw_rate=1&flaws=json")}
    assert styles == {PREFACE[:5], '{"ans'}  # a preface before the object, or the object cut short


def test_the_draw_depends_on_the_messages_and_the_provider_not_the_model() -> None:
    url = "mock://a?flaw_rate=0.5&flaws=json"
    prompts = [f"prompt {i}" for i in range(60)]
    decisions = flawed(prompts, url)
    assert decisions == flawed(prompts, url)  # the same every time
    assert decisions == flawed(prompts, url, model="other")
    assert decisions != flawed(prompts, "mock://b?flaw_rate=0.5&flaws=json")


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.7])
def test_the_flawed_share_is_close_to_the_rate(rate: float) -> None:
    decisions = flawed([f"distinct prompt number {i}" for i in range(400)], f"mock://share?flaw_rate={rate}")
    assert abs(sum(decisions) / 400 - rate) < 0.08


def test_odd_messages_are_answered() -> None:
    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    assert content(answer(parts)).endswith("You said: look")
    assert answer(parts)["usage"]["prompt_tokens"] > 765  # an image


def test_a_flaw_that_cannot_apply_leaves_the_answer_clean() -> None:
    assert content(answer("hello", "mock://x?flaw_rate=1&flaws=json")) == "[m via mock:x] You said: hello"


def test_refusal_and_truncate() -> None:
    refused = answer("hello", "mock://x?flaw_rate=1&flaws=refusal", tools=[WEATHER])["choices"][0]
    assert refused["message"] == {"role": "assistant", "content": REFUSAL, "refusal": None}
    assert refused["finish_reason"] == "stop"
    text = "please repeat this rather long sentence back to me"
    clean = answer(text, "mock://x")["choices"][0]["message"]["content"]
    cut = answer(text, "mock://x?flaw_rate=1&flaws=truncate")["choices"][0]
    assert cut["finish_reason"] == "length"
    assert clean.startswith(cut["message"]["content"])
    assert len(cut["message"]["content"]) < len(clean)


def test_tools_flaws_miss_a_required_property_or_give_a_wrong_type() -> None:
    bodies = [
        {"model": "m", "messages": [{"role": "user", "content": f"call {i}"}], "tools": [WEATHER]}
        for i in range(30)
    ]
    kinds = set()
    for response in post_all(bodies, "mock://x?flaw_rate=1&flaws=tools"):
        call = response.json()["choices"][0]["message"]["tool_calls"][0]
        arguments = json.loads(call["function"]["arguments"])
        if set(arguments) != {"city", "days"}:
            kinds.add("missing")
        elif not isinstance(arguments["city"], str) or not isinstance(arguments["days"], int):
            kinds.add("wrong type")
        else:
            raise AssertionError(f"clean arguments: {arguments}")
    assert kinds == {"missing", "wrong type"}


# ------------------------------------------------------------------------------ options


def test_latency_and_fail_rate_still_work() -> None:
    transport = MockTransport()
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    statuses = [post(body, "mock://f?fail_rate=0.5", transport).status_code for _ in range(4)]
    assert sorted(statuses) == [200, 200, 503, 503]

    async def timed() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with httpx.AsyncClient(mounts={"mock://": MockTransport()}) as client:
            await client.post("mock://s/chat/completions?latency_ms=120", json=body)
        return loop.time() - start

    assert asyncio.run(timed()) >= 0.12


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("flaw_rate=2", "flaw_rate"),
        ("flaws=json,typo", "typo"),
        ("flaw_rat=0.1", "flaw_rat"),
        ("latency_ms=x", "latency_ms"),
    ],
)
def test_a_bad_option_is_refused_naming_it(query: str, named: str) -> None:
    response = post({"model": "m", "messages": [{"role": "user", "content": "x"}]}, f"mock://bad?{query}")
    assert response.status_code == 400
    assert named in response.json()["error"]["message"]
    with pytest.raises(ValueError, match=named):
        check_url(f"mock://bad?{query}")
    check_url("mock://good?latency_ms=5&fail_rate=0.1&flaw_rate=0.3&flaws=json,tools")
