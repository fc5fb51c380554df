"""Issue 13: the router checks the types and ranges of the OpenAI parameters it reads,
translates or prices, as OpenAI does — a 400 `invalid_request_error` naming the `param`
(`messages[2].content[0].type`) with OpenAI's `code` — before anything reaches a provider.

Before the fix `stream: "yes"` was served as a stream, `temperature: "hot"`, `max_tokens: "5"`
or a content part of an unknown `type` were forwarded, and the rejections the router did make
named the param pydantic's way (`messages.0.role`) with the code `invalid_request`.

One router on 127.0.0.1 (uvicorn in a thread) in front of the three loopback fakes (two
OpenAI-compatible, one Anthropic): raw httpx for the wrong types, the real `openai` SDK (sync
and async) for the valid requests that must still pass, including through the Anthropic
translation. The OpenAI messages and codes follow OpenAI's own answers (see
`tier_router.params`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_providers import FakeProviders
from tests.support.router_app import build_app, serve_in_thread
from tests.support.rules import KEYS, three_providers

CHAT = "/v1/chat/completions"
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4 tiny").decode()
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
}
HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "12 C, rain"},
    {"role": "user", "content": "And tomorrow?"},
]


@pytest.fixture(scope="module")
def router_url(_fake_providers: FakeProviders) -> Iterator[str]:
    fakes = _fake_providers
    rules = three_providers(fakes.a.url + "/v1", fakes.b.url + "/v1", fakes.anthropic.url)
    with serve_in_thread(build_app(rules, keys=KEYS)) as url:
        yield url


@pytest.fixture
def http(router_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=router_url, timeout=10.0) as client:
        yield client


def body(model: str = "fast", **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}
    return {k: v for k, v in out.items() if v is not DROP}


DROP = object()


def msgs(*messages: dict[str, Any]) -> list[dict[str, Any]]:
    return list(messages)


def user(content: Any, **fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **fields}


TYPE, VALUE, MISSING = "invalid_type", "invalid_value", "missing_required_parameter"


def parts(*content: Any, model: str = "fast") -> dict[str, Any]:
    """A body whose one user message holds these content parts."""
    return body(model, messages=[user(list(content))])


def said(*messages: dict[str, Any]) -> dict[str, Any]:
    """A body whose conversation is a user "x" and then these messages."""
    return body(messages=[user("x"), *messages])


def bot(**fields: Any) -> dict[str, Any]:
    return {"role": "assistant", **fields}


def called(**call: Any) -> dict[str, Any]:
    """A conversation with one assistant tool call: CALL with these fields (None: left out)."""
    merged = {k: v for k, v in {**CALL, **call}.items() if v is not None}
    return said(bot(tool_calls=[merged]))


IMAGE = {"type": "image_url", "image_url": {"url": PNG}}
C0 = "messages[0].content[0]"
SCHEMA = "response_format.json_schema"

# (id, body, param, code): every body is invalid exactly once.
REJECTED: list[tuple[str, dict[str, Any], str, str]] = [
    # model, messages
    ("model-int", body(model=5), "model", TYPE),
    ("model-missing", body(model=DROP), "model", MISSING),
    ("messages-string", body(messages="hi"), "messages", TYPE),
    ("messages-empty", body(messages=[]), "messages", "empty_array"),
    ("message-string", body(messages=["hi"]), "messages[0]", TYPE),
    ("role-missing", body(messages=[{"content": "hi"}]), "messages[0].role", MISSING),
    ("role-unknown", said({"role": "robot", "content": "x"}), "messages[1].role", VALUE),
    ("role-int", body(messages=[{"role": 1, "content": "x"}]), "messages[0].role", TYPE),
    ("content-int", body(messages=[user(7)]), "messages[0].content", TYPE),
    ("content-object", body(messages=[user({"type": "text", "text": "x"})]), "messages[0].content", TYPE),
    ("name-int", body(messages=[user("x", name=5)]), "messages[0].name", TYPE),
    # content parts
    ("part-string", parts("hi"), C0, TYPE),
    ("part-no-type", parts({"text": "hi"}), f"{C0}.type", MISSING),
    (
        "part-type-unknown",
        said(user([{"type": "text", "text": "a"}, {"type": "video"}])),
        "messages[1].content[1].type",
        VALUE,
    ),
    ("part-type-int", parts({"type": 3}), f"{C0}.type", TYPE),
    ("text-int", parts({"type": "text", "text": 5}), f"{C0}.text", TYPE),
    ("text-missing", parts({"type": "text"}), f"{C0}.text", MISSING),
    ("image-missing", parts({"type": "image_url"}), f"{C0}.image_url", MISSING),
    ("image-url-int", parts({"type": "image_url", "image_url": {"url": 5}}), f"{C0}.image_url.url", TYPE),
    ("audio-string", parts({"type": "input_audio", "input_audio": "x"}), f"{C0}.input_audio", TYPE),
    ("file-int", parts({"type": "file", "file": 5}), f"{C0}.file", TYPE),
    ("system-image", body(messages=[{"role": "system", "content": [IMAGE]}, user("x")]), f"{C0}.type", VALUE),
    ("user-refusal", parts({"type": "refusal", "refusal": "no"}), f"{C0}.type", VALUE),
    ("assistant-image", said(bot(content=[IMAGE])), "messages[1].content[0].type", VALUE),
    (
        "refusal-int",
        said(bot(content=[{"type": "refusal", "refusal": 1}])),
        "messages[1].content[0].refusal",
        TYPE,
    ),
    (
        "function-parts",
        said({"role": "function", "name": "f", "content": [{"type": "text"}]}),
        "messages[1].content",
        TYPE,
    ),
    # tool calls and tool results
    ("tool-calls-string", said(bot(tool_calls="f")), "messages[1].tool_calls", TYPE),
    ("tool-call-no-id", called(id=None), "messages[1].tool_calls[0].id", MISSING),
    ("tool-call-type", called(type="bogus"), "messages[1].tool_calls[0].type", VALUE),
    ("tool-call-no-function", called(function=None), "messages[1].tool_calls[0].function", MISSING),
    (
        "tool-call-args-object",
        called(function={"name": "f", "arguments": {}}),
        "messages[1].tool_calls[0].function.arguments",
        TYPE,
    ),
    (
        "tool-no-call-id",
        body(messages=[*HISTORY[:3], {"role": "tool", "content": "1"}]),
        "messages[3].tool_call_id",
        MISSING,
    ),
    (
        "tool-call-id-int",
        body(messages=[*HISTORY[:3], {"role": "tool", "tool_call_id": 1}]),
        "messages[3].tool_call_id",
        TYPE,
    ),
    ("function-no-name", said({"role": "function", "content": "x"}), "messages[1].name", MISSING),
    # stream
    ("stream-yes", body(stream="yes"), "stream", TYPE),
    ("stream-int", body(stream=1), "stream", TYPE),
    ("stream-options-string", body(stream=True, stream_options="x"), "stream_options", TYPE),
    (
        "include-usage-yes",
        body(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
        TYPE,
    ),
    # sampling
    ("temperature-hot", body(temperature="hot"), "temperature", TYPE),
    ("temperature-bool", body(temperature=True), "temperature", TYPE),
    ("temperature-high", body(temperature=2.5), "temperature", "decimal_above_max_value"),
    ("temperature-low", body(temperature=-0.1), "temperature", "decimal_below_min_value"),
    ("top-p-high", body(top_p=1.5), "top_p", "decimal_above_max_value"),
    ("presence-low", body(presence_penalty=-3), "presence_penalty", "decimal_below_min_value"),
    ("frequency-string", body(frequency_penalty="0"), "frequency_penalty", TYPE),
    ("seed-string", body(seed="1"), "seed", TYPE),
    ("seed-decimal", body(seed=1.5), "seed", TYPE),
    ("seed-huge", body(seed=2**63), "seed", "integer_above_max_value"),
    ("stop-int", body(stop=5), "stop", TYPE),
    ("stop-item-int", body(stop=["a", 1]), "stop[1]", TYPE),
    ("stop-five", body(stop=["a", "b", "c", "d", "e"]), "stop", "array_above_max_length"),
    ("logprobs-string", body(logprobs="true"), "logprobs", TYPE),
    ("top-logprobs-high", body(logprobs=True, top_logprobs=21), "top_logprobs", "integer_above_max_value"),
    ("top-logprobs-low", body(logprobs=True, top_logprobs=-1), "top_logprobs", "integer_below_min_value"),
    ("logit-bias-list", body(logit_bias=[1]), "logit_bias", TYPE),
    ("logit-bias-high", body(logit_bias={"50256": 101}), "logit_bias.50256", "integer_above_max_value"),
    ("logit-bias-string", body(logit_bias={"50256": "1"}), "logit_bias.50256", TYPE),
    # limits and choices
    ("n-zero", body(n=0), "n", "integer_below_min_value"),
    ("n-high", body(n=129), "n", "integer_above_max_value"),
    ("n-decimal", body(n=2.0), "n", TYPE),
    ("n-string", body(n="2"), "n", TYPE),
    ("max-tokens-string", body(max_tokens="5"), "max_tokens", TYPE),
    ("max-tokens-zero", body(max_tokens=0), "max_tokens", "integer_below_min_value"),
    ("max-tokens-decimal", body(max_tokens=16.0), "max_tokens", TYPE),
    (
        "max-completion-negative",
        body(max_completion_tokens=-1),
        "max_completion_tokens",
        "integer_below_min_value",
    ),
    # tools
    ("tools-string", body(tools="none"), "tools", TYPE),
    ("tool-int", body(tools=[5]), "tools[0]", TYPE),
    ("tool-type", body(tools=[TOOL, {"type": "retrieval"}]), "tools[1].type", VALUE),
    ("tool-no-function", body(tools=[{"type": "function"}]), "tools[0].function", MISSING),
    ("tool-no-name", body(tools=[{"type": "function", "function": {}}]), "tools[0].function.name", MISSING),
    (
        "tool-parameters",
        body(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
        "tools[0].function.parameters",
        TYPE,
    ),
    ("tool-choice-int", body(tools=[TOOL], tool_choice=7), "tool_choice", TYPE),
    ("tool-choice-bogus", body(tools=[TOOL], tool_choice="bogus"), "tool_choice", VALUE),
    (
        "tool-choice-no-function",
        body(tools=[TOOL], tool_choice={"type": "function"}),
        "tool_choice.function",
        MISSING,
    ),
    (
        "tool-choice-no-name",
        body(tools=[TOOL], tool_choice={"type": "function", "function": {}}),
        "tool_choice.function.name",
        MISSING,
    ),
    ("parallel-string", body(tools=[TOOL], parallel_tool_calls="false"), "parallel_tool_calls", TYPE),
    ("functions-no-name", body(functions=[{"parameters": {}}]), "functions[0].name", MISSING),
    ("function-call-int", body(functions=[{"name": "f"}], function_call=5), "function_call", TYPE),
    # response_format
    ("format-string", body(response_format="json"), "response_format", TYPE),
    ("format-no-type", body(response_format={}), "response_format.type", MISSING),
    ("format-xml", body(response_format={"type": "xml"}), "response_format.type", VALUE),
    ("format-no-schema", body(response_format={"type": "json_schema"}), SCHEMA, MISSING),
    (
        "format-no-name",
        body(response_format={"type": "json_schema", "json_schema": {}}),
        f"{SCHEMA}.name",
        MISSING,
    ),
    (
        "format-schema-string",
        body(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": "{}"}}),
        f"{SCHEMA}.schema",
        TYPE,
    ),
    # user, metadata and the other unbilled fields
    ("user-object", body(user={"id": 1}), "user", TYPE),
    ("metadata-int", body(metadata={"k": 7}), "metadata.k", TYPE),
    (
        "metadata-17",
        body(metadata={f"k{i}": "v" for i in range(17)}),
        "metadata",
        "object_above_max_properties",
    ),
    ("metadata-long-value", body(metadata={"k": "x" * 513}), "metadata.k", "string_above_max_length"),
    ("store-string", body(store="yes"), "store", TYPE),
    ("modalities-string", body(modalities="text"), "modalities", TYPE),
    # the Anthropic translation reads these too: refused the same way, before translating
    ("claude-temperature-hot", body("claude", temperature="hot"), "temperature", TYPE),
    ("claude-part-type-unknown", parts({"type": "video"}, model="claude"), f"{C0}.type", VALUE),
    ("claude-stream-yes", body("claude", stream="yes"), "stream", TYPE),
]


@pytest.mark.parametrize(("sent", "param", "code"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_a_wrong_type_or_range_is_an_openai_400_naming_the_param(
    http: httpx.Client, fakes: FakeProviders, sent: dict[str, Any], param: str, code: str
) -> None:
    response = http.post(CHAT, json=sent)
    assert response.status_code == 400, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code), error
    assert param in error["message"] or "Invalid value" in error["message"], error["message"]
    assert [fake.requests for fake in fakes.all] == [0, 0, 0]


def test_explain_refuses_the_same_bodies(http: httpx.Client) -> None:
    """`/v1/route/explain` decides on the same checked body (one case of each kind)."""
    for name, sent, param, code in REJECTED[::6]:
        response = http.post("/v1/route/explain", json=sent)
        assert response.status_code == 400, name
        assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (param, code), name


def test_the_messages_are_openais(http: httpx.Client, fakes: FakeProviders) -> None:
    """The wording of OpenAI's own answers (openai-python issues and API captures)."""
    cases = [
        (body(temperature="hot"), "Invalid type for 'temperature': expected a decimal, but got a string"),
        (
            body(max_tokens=5.0),
            "Invalid type for 'max_tokens': expected an integer, but got a decimal number",
        ),
        (body(stream="yes"), "Invalid type for 'stream': expected a boolean, but got a string"),
        (
            body(temperature=2.5),
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5",
        ),
        (body(n=0), "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0"),
        (body(messages=[{"content": "x"}]), "Missing required parameter: 'messages[0].role'."),
        (
            body(messages=[]),
            "Invalid 'messages': empty array. Expected an array with minimum length 1",
        ),
        (
            body(messages=[user(7)]),
            "Invalid type for 'messages[0].content': expected one of a string or array of objects",
        ),
        (
            body(messages=[{"role": "robot"}]),
            "Invalid value: 'robot'. Supported values are: 'system', 'assistant', ",
        ),
    ]
    for sent, message in cases:
        response = http.post(CHAT, json=sent)
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith(message)
    assert fakes.a.requests == 0


@pytest.mark.parametrize(
    "sent",
    [
        body(messages=[{"role": "r" * 10_000, "content": "x"}]),
        body(seed=10**4000),
        body(logit_bias={"7" * 10_000: 500}),
        body(metadata={"k" * 10_000: "v"}),
        body(tools=[TOOL], tool_choice="c" * 10_000),
    ],
    ids=["role", "seed", "logit-bias-key", "metadata-key", "tool-choice"],
)
def test_a_long_rejected_value_is_not_echoed_whole(http: httpx.Client, sent: dict[str, Any]) -> None:
    response = http.post(CHAT, json=sent)
    assert response.status_code == 400
    assert len(response.text) < 1_000


# -- what must still pass ----------------------------------------------------------------------


def test_nulls_ints_for_decimals_bounds_and_unknown_fields_pass(
    http: httpx.Client, fakes: FakeProviders
) -> None:
    """OpenAI accepts null for every optional parameter, an integer where it takes a decimal and
    the bounds themselves; fields the router does not know are forwarded as they were."""
    nulls = {
        key: None
        for key in (
            "stream", "stream_options", "n", "max_tokens", "max_completion_tokens", "temperature",
            "top_p", "presence_penalty", "frequency_penalty", "seed", "stop", "tools", "tool_choice",
            "response_format", "user", "metadata", "logprobs", "top_logprobs", "logit_bias", "functions",
            "modalities", "store",
        )
    }  # fmt: skip
    bounds = {
        "temperature": 2,
        "top_p": 0,
        "presence_penalty": -2,
        "frequency_penalty": 2.0,
        "seed": -(2**63),
        "n": 1,
        "stop": "END",
        "logprobs": True,
        "top_logprobs": 20,
        "logit_bias": {"50256": -100, "1": 100},
        "metadata": {("k" * 63 + str(i))[-64:]: "v" * 512 for i in range(16)},
        "max_completion_tokens": 1,
        "x_vendor_extension": {"anything": [1, "two"]},
    }
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}], "name": None},
        user(
            [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
            ]
        ),
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "A"}, {"type": "refusal", "refusal": "no"}],
        },
        user(None),
        user("ok", cache_control={"type": "ephemeral"}),
    ]
    for sent in (body(**nulls), body(**bounds), body(messages=messages)):
        response = http.post(CHAT, json=sent)
        assert response.status_code == 200, response.text[:500]
    forwarded = [r["body"] for r in fakes.a.stats()["recent"]]
    assert len(forwarded) == 3
    assert forwarded[1]["x_vendor_extension"] == {"anything": [1, "two"]}
    assert forwarded[1]["temperature"] == 2
    assert forwarded[1]["logit_bias"] == bounds["logit_bias"]


def sdk_requests() -> dict[str, dict[str, Any]]:
    """Valid requests as the SDK sends them: (create kwargs)."""
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    return {
        "sampling": {
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.7,
            "top_p": 1,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "seed": 42,
            "stop": ["a", "b", "c", "d"],
            "max_tokens": 64,
            "user": "u-1",
            "metadata": {"team": "search"},
            "parallel_tool_calls": False,
            "tools": [TOOL],
            "tool_choice": "auto",
        },
        "images": {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": PNG}},
                    ],
                }
            ],
        },
        "tool-history": {
            "messages": HISTORY,
            "tools": [TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
        "json-schema": {
            "messages": [{"role": "user", "content": "Answer in JSON."}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            },
            "max_completion_tokens": 100,
        },
        "pdf": {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "file", "file": {"filename": "a.pdf", "file_data": PDF}},
                        {"type": "text", "text": "Summarise"},
                    ],
                }
            ],
        },
    }


SDK_CASES = [(name, model) for name in sdk_requests() for model in ("fast", "claude")]


@pytest.mark.parametrize(("name", "model"), SDK_CASES, ids=[f"{n}-{m}" for n, m in SDK_CASES])
def test_valid_sdk_requests_pass_sync(router_url: str, fakes: FakeProviders, name: str, model: str) -> None:
    client = openai.OpenAI(base_url=router_url + "/v1", api_key="unused", max_retries=0, timeout=10.0)
    with client:
        completion = client.chat.completions.create(model=model, **sdk_requests()[name])
        assert completion.choices
        stream = client.chat.completions.create(
            model=model, stream=True, stream_options={"include_usage": True}, **sdk_requests()[name]
        )
        chunks = list(stream)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    fake = fakes.anthropic if model == "claude" else fakes.a
    assert fake.requests == 2


@pytest.mark.anyio
async def test_valid_sdk_requests_pass_async(router_url: str, fakes: FakeProviders) -> None:
    client = openai.AsyncOpenAI(base_url=router_url + "/v1", api_key="unused", max_retries=0, timeout=10.0)
    async with client:
        for name, model in SDK_CASES:
            completion = await client.chat.completions.create(model=model, **sdk_requests()[name])
            assert completion.choices, name
        stream = await client.chat.completions.create(
            model="fast", messages=HISTORY, tools=[TOOL], stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        assert chunks[-1].usage is not None
        several = await client.chat.completions.create(model="fast", messages=HISTORY, n=3)
        assert several.choices
    assert fakes.a.last["body"]["n"] == 3
