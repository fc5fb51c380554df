"""Issue 7, "Bad requests": whatever a client sends, the router answers with a 4xx in the
OpenAI error shape (or a 200 when the request is valid), never a 500, a stack trace, a module
path or a provider key, and it keeps serving afterwards.

Property tests (Hypothesis) generate JSON-ish bodies, single wrong-typed fields, raw bytes and
auth headers; example tests pin the nasty cases: 10k-deep nesting, lone surrogates, invalid
UTF-8, bodies over the limit (with and without a Content-Length), wrong content types,
methods and paths. The harness and invariants live in `conftest.py`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import MODELS, ROUTER_KEY, SMALL_LIMIT, Harness, check_response

CHAT = "/v1/chat/completions"
EXPLAIN = "/v1/route/explain"
POST_PATHS = (CHAT, "/chat/completions", EXPLAIN)

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),  # raise it for a long local hunt
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


def valid_body(**fields: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": "Say hi"}], **fields}


# -- strategies ------------------------------------------------------------------------------

# Text including lone surrogates (valid JSON as `\ud800` escapes, but not Unicode text).
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
any_text = st.text(st.characters() | surrogates, max_size=24)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=16,
)

TOP_FIELDS = (
    "model",
    "messages",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "max_tokens",
    "max_completion_tokens",
    "metadata",
    "user",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "logit_bias",
    "logprobs",
    "parallel_tool_calls",
    "reasoning_effort",
    "prediction",
    "modalities",
    "audio",
    "store",
    "x_unknown_field",
)
MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal")
PART_FIELDS = ("type", "text", "image_url", "input_audio", "file")

# Bodies shaped like chat requests: known field names, any values.
chat_shaped = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(MODELS) | json_values,
        "messages": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "role": st.sampled_from(["user", "system", "assistant", "tool", "developer"])
                    | json_values,
                    "content": any_text
                    | json_values
                    | st.lists(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                f: st.sampled_from(["text", "image_url"]) | json_values for f in PART_FIELDS
                            },
                        ),
                        max_size=3,
                    ),
                    "name": json_values,
                },
            )
            | json_values,
            max_size=3,
        )
        | json_values,
        **{f: json_values for f in TOP_FIELDS if f not in ("model", "messages")},
    },
)

# Bodies that are valid: must be answered 200 (routing to OpenAI and Anthropic fakes).
plain_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
valid_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(MODELS),
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "system", "assistant", "developer"]),
                    "content": plain_text
                    | st.lists(
                        st.fixed_dictionaries({"type": st.just("text"), "text": plain_text}),
                        min_size=1,
                        max_size=3,
                    ),
                }
            ),
            min_size=1,
            max_size=4,
        ).map(lambda ms: [*ms, {"role": "user", "content": "hello"}]),
    },
    optional={
        "stream": st.booleans(),
        "max_tokens": st.integers(min_value=1, max_value=2048),
        "temperature": st.floats(min_value=0, max_value=2),
        "metadata": st.dictionaries(
            st.text(st.characters(codec="ascii"), max_size=10), plain_text, max_size=3
        ),
        "user": plain_text,
        "x_vendor_extension": st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    },
)

# -- property tests --------------------------------------------------------------------------


@FUZZ
@given(body=json_values, path=st.sampled_from(POST_PATHS))
def test_any_json_value_as_body(open_router: Harness, body: Any, path: str) -> None:
    response = open_router.checked("POST", path, json=body)
    assert response.status_code in (200, 400, 404), response.text


@FUZZ
@given(body=chat_shaped, path=st.sampled_from((CHAT, EXPLAIN)))
def test_chat_shaped_bodies_with_any_values(open_router: Harness, body: dict[str, Any], path: str) -> None:
    response = open_router.checked("POST", path, json=body)
    assert response.status_code in (200, 400, 404), response.text


@FUZZ
@given(field=st.sampled_from(TOP_FIELDS), value=json_values, stream=st.booleans())
def test_one_top_level_field_with_any_value(
    open_router: Harness, field: str, value: Any, stream: bool
) -> None:
    body = valid_body(stream=stream)
    body[field] = value
    response = open_router.checked("POST", CHAT, json=body)
    assert response.status_code in (200, 400, 404), response.text


@FUZZ
@given(field=st.sampled_from(MESSAGE_FIELDS), value=json_values, model=st.sampled_from(("auto", "claude")))
def test_one_message_field_with_any_value(open_router: Harness, field: str, value: Any, model: str) -> None:
    message: dict[str, Any] = {"role": "user", "content": "hi"}
    message[field] = value
    body = valid_body(model=model, messages=[{"role": "system", "content": "be brief"}, message])
    response = open_router.checked("POST", CHAT, json=body)
    assert response.status_code in (200, 400, 404), response.text


@FUZZ
@given(field=st.sampled_from(PART_FIELDS), value=json_values, model=st.sampled_from(("auto", "claude")))
def test_one_content_part_field_with_any_value(
    open_router: Harness, field: str, value: Any, model: str
) -> None:
    part: dict[str, Any] = {"type": "text", "text": "hi"}
    part[field] = value
    body = valid_body(model=model, messages=[{"role": "user", "content": [part]}])
    response = open_router.checked("POST", CHAT, json=body)
    assert response.status_code in (200, 400, 404), response.text


@FUZZ
@given(body=valid_bodies)
def test_valid_requests_are_served(open_router: Harness, body: dict[str, Any]) -> None:
    response = open_router.checked("POST", CHAT, json=body)
    assert response.status_code == 200, response.text
    explained = open_router.checked("POST", EXPLAIN, json=body)
    assert explained.status_code == 200, explained.text


@FUZZ
@given(
    content=st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.sampled_from([b"", b"{", b'{"model":', b"\xff\xfe", b"\x00", b"[" * 50, b"null", b"NaN"]),
    content_type=st.sampled_from(
        [
            None,
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/vnd.api+json",
            "",
        ]
    ),
    path=st.sampled_from(POST_PATHS),
)
def test_raw_bytes_with_any_content_type(
    open_router: Harness, content: bytes, content_type: str | None, path: str
) -> None:
    response = open_router.post_raw(path, content, content_type)
    check_response(response, sent=content)
    assert response.status_code in (200, 400, 404, 415), response.text


@settings(FUZZ, max_examples=40)
@given(
    header=st.text(st.characters(codec="latin-1"), max_size=40)
    | st.builds(
        lambda s, t: f"{s} {t}",
        st.sampled_from(["Bearer", "bearer", "Basic", "Token", ""]),
        st.text(st.characters(codec="latin-1"), max_size=20),
    ),
    path=st.sampled_from(("/v1/models", "/v1/router/status", CHAT, EXPLAIN)),
)
def test_wrong_auth_is_401(authed: Harness, header: str, path: str) -> None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip() == ROUTER_KEY:
        return  # that is the right key
    method = "GET" if path in ("/v1/models", "/v1/router/status") else "POST"
    response = authed.checked(
        method, path, headers={"authorization": header.encode("latin-1")}, json=valid_body()
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert ROUTER_KEY not in response.text


# -- nesting ---------------------------------------------------------------------------------


def deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("nest", [deep_array, deep_object], ids=["array", "object"])
@pytest.mark.parametrize(
    "template",
    [
        "{nested}",
        '{{"model":"auto","messages":{nested}}}',
        '{{"model":"auto","messages":[{{"role":"user","content":{nested}}}]}}',
        '{{"model":"auto","messages":[{{"role":"user","content":"hi"}}],"x_extra":{nested}}}',
        '{{"model":"auto","messages":[{{"role":"user","content":"hi"}}],"tools":[{{"function":{nested}}}]}}',
        '{{"model":"auto","messages":[{{"role":"user","content":"hi"}}],"metadata":{{"k":{nested}}}}}',
    ],
    ids=["top", "messages", "content", "unknown-field", "tools", "metadata"],
)
@pytest.mark.parametrize("path", [CHAT, EXPLAIN])
def test_10k_deep_nesting_is_a_400(open_router: Harness, nest: Any, template: str, path: str) -> None:
    content = template.format(nested=nest(10_000)).encode()
    response = open_router.post_raw(path, content)
    check_response(response, sent=content)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("depth", [100, 300, 600, 900])
@pytest.mark.parametrize("where", ["unknown-field", "tools", "response_format", "content-part"])
@pytest.mark.parametrize("model", ["auto", "claude"])
def test_moderately_deep_nesting_is_not_a_500(
    open_router: Harness, depth: int, where: str, model: str
) -> None:
    """Deep enough to parse, deep enough to trouble whatever walks or re-serialises it."""
    nested = deep_array(depth)
    fields = {
        "unknown-field": f'"x_extra":{nested}',
        "tools": f'"tools":[{{"type":"function","function":{{"name":"f","parameters":{nested}}}}}]',
        "response_format": f'"response_format":{{"type":"json_schema","json_schema":{nested}}}',
        "content-part": "",
    }
    content_value = f'[{{"type":"text","text":"hi","x":{nested}}}]' if where == "content-part" else '"hi"'
    extra = f",{fields[where]}" if fields[where] else ""
    content = (
        f'{{"model":"{model}","messages":[{{"role":"user","content":{content_value}}}]{extra}}}'
    ).encode()
    response = open_router.post_raw(CHAT, content)
    check_response(response, sent=content)
    assert response.status_code in (200, 400), response.text


# -- text encoding ---------------------------------------------------------------------------

LONE = r"\ud800"


@pytest.mark.parametrize(
    "body",
    [
        f'{{"model":"auto","messages":[{{"role":"user","content":"a{LONE}b"}}]}}',
        f'{{"model":"auto","messages":[{{"role":"user","content":[{{"type":"text","text":"{LONE}"}}]}}]}}',
        f'{{"model":"auto","messages":[{{"role":"user","content":"hi"}}],"user":"{LONE}"}}',
        f'{{"model":"auto","messages":[{{"role":"user","content":"hi"}}],"metadata":{{"k":"{LONE}"}}}}',
        f'{{"model":"{LONE}","messages":[{{"role":"user","content":"hi"}}]}}',
        r'{"model":"auto","messages":[{"role":"user","content":"\udfff\ud800"}]}',
    ],
    ids=["content", "content-part", "user", "metadata", "model", "reversed-pair"],
)
@pytest.mark.parametrize("path", [CHAT, EXPLAIN])
def test_lone_surrogates_in_validated_fields_are_a_4xx(open_router: Harness, body: str, path: str) -> None:
    response = open_router.post_raw(path, body.encode())
    check_response(response, sent=body.encode())
    assert response.status_code in (400, 404), response.text


@pytest.mark.parametrize(
    "body",
    [
        f'{{"model":"auto","messages":[{{"role":"user","content":"hi"}}],"x_extra":"{LONE}"}}',
        f'{{"model":"auto","messages":[{{"role":"user","content":"hi","name":"{LONE}"}}]}}',
        f'{{"model":"auto","messages":[{{"role":"user","content":"hi"}}],"stop":["{LONE}"]}}',
        f'{{"model":"auto","messages":[{{"role":"user","content":"hi"}}],'
        f'"tools":[{{"type":"function","function":{{"name":"{LONE}"}}}}]}}',
        f'{{"model":"auto","messages":[{{"role":"user","content":"hi"}}],"metadata":{{"{LONE}":"v"}}}}',
        f'{{"model":"auto","messages":[{{"role":"user","content":[{{"type":"image_url",'
        f'"image_url":{{"url":"{LONE}"}}}}]}}]}}',
    ],
    ids=["unknown-field", "message-name", "stop", "tool-name", "metadata-key", "image-url"],
)
@pytest.mark.parametrize("stream", [False, True])
def test_lone_surrogates_in_forwarded_fields_are_not_a_500(
    open_router: Harness, body: str, stream: bool
) -> None:
    """Fields the router does not validate but forwards: a surrogate there has no UTF-8 form
    either, so the forwarded body cannot be encoded; the client must get a 400, not a 500."""
    data = json.loads(body)
    data["stream"] = stream
    content = json.dumps(data).encode()  # ensure_ascii: the surrogate stays a `\ud800` escape
    response = open_router.post_raw(CHAT, content)
    check_response(response, sent=content)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "content",
    [
        b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"x_extra":"\xed\xa0\x80"}',
        b'{"model":"auto","messages":[{"role":"user","content":"hi","name":"\xed\xb0\x80"}]}',
    ],
    ids=["unknown-field", "message-name"],
)
def test_raw_surrogate_bytes_in_forwarded_fields_are_a_400(
    open_router: Harness, content: bytes, stream: bool
) -> None:
    """UTF-8-encoded surrogates (CESU-8 style) are not UTF-8; `json.loads(bytes)` lets them
    through (it decodes with `surrogatepass`), and forwarding them then fails to encode."""
    content = content[:-1] + (b',"stream":true}' if stream else b"}")
    response = open_router.post_raw(CHAT, content)
    check_response(response, sent=content)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    "content",
    [
        b'{"model":"auto","messages":[{"role":"user","content":"\xff\xfe"}]}',
        b'{"model":"auto","messages":[{"role":"user","content":"\xc3"}]}',
        b'{"model":"auto","messages":[{"role":"user","content":"\xed\xa0\x80"}]}',  # CESU surrogate
        b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"x":"\xc0\xaf"}',  # overlong
        b"\xef\xbb\xbf\xff",
        b"\x80" * 100,
    ],
)
def test_invalid_utf8_is_a_400(open_router: Harness, content: bytes) -> None:
    response = open_router.post_raw(CHAT, content)
    check_response(response, sent=content)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("invalid_json", "invalid_request")


# -- wrong types in fields the router reads without validating -------------------------------


@pytest.mark.parametrize("value", [5, 1.5, "x", True, [1], ["include_usage"]])
@pytest.mark.parametrize("model", ["auto", "claude"])
def test_non_object_stream_options_is_a_400(open_router: Harness, value: Any, model: str) -> None:
    """`stream_options` must be an object; with `stream: true` the router reads it itself."""
    response = open_router.checked(
        "POST", CHAT, json=valid_body(model=model, stream=True, stream_options=value)
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("value", [5, 1.5, True])
@pytest.mark.parametrize("stream", [False, True])
def test_non_list_modalities_for_anthropic_is_not_a_500(
    open_router: Harness, value: Any, stream: bool
) -> None:
    """The Anthropic adapter does `"audio" in (body.get("modalities") or ())`."""
    response = open_router.checked(
        "POST", CHAT, json=valid_body(model="claude", stream=stream, modalities=value)
    )
    assert response.status_code in (200, 400), response.text


# -- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b" ", b"null", b"[]", b"1", b'"x"', b"{}", b'{"model":"auto"}', b'{"model":"auto","messages":[]}'],
    ids=["empty", "space", "null", "array", "number", "string", "object", "no-messages", "empty-messages"],
)
def test_empty_and_trivial_bodies_are_a_400(open_router: Harness, content: bytes) -> None:
    response = open_router.post_raw(CHAT, content)
    check_response(response, sent=content)
    assert response.status_code == 400, response.text


def test_empty_message_content_is_served(open_router: Harness) -> None:
    for content in ("", None, []):
        body = valid_body(messages=[{"role": "user", "content": content}])
        response = open_router.checked("POST", CHAT, json=body)
        assert response.status_code in (200, 400), response.text


def test_body_just_under_the_limit_is_served(small: Harness) -> None:
    filler = "x" * (SMALL_LIMIT - 200)
    response = small.checked("POST", CHAT, json=valid_body(messages=[{"role": "user", "content": filler}]))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", [CHAT, EXPLAIN])
def test_body_over_the_limit_is_a_413(small: Harness, chunked: bool, path: str) -> None:
    content = json.dumps(
        valid_body(messages=[{"role": "user", "content": "x" * (SMALL_LIMIT + 10)}])
    ).encode()
    if chunked:  # no Content-Length: the limit must hold while reading the stream

        async def parts() -> Any:
            for i in range(0, len(content), 4096):
                yield content[i : i + 4096]

        response = small.post(path, content=parts(), headers={"content-type": "application/json"})
    else:
        response = small.post_raw(path, content)
    check_response(response)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"


def test_enormous_message_over_the_default_limit_is_a_413(open_router: Harness) -> None:
    content = b'{"model":"auto","messages":[{"role":"user","content":"' + b"y" * (11 * 1024 * 1024) + b'"}]}'
    response = open_router.post_raw(CHAT, content)
    check_response(response)
    assert response.status_code == 413, response.text


def test_huge_declared_content_length_is_a_413(small: Harness) -> None:
    response = small.post(
        CHAT, content=b"{}", headers={"content-type": "application/json", "content-length": str(10**12)}
    )
    check_response(response)
    assert response.status_code == 413, response.text


def test_many_messages_and_wide_objects_are_not_a_500(open_router: Harness) -> None:
    many = valid_body(messages=[{"role": "user", "content": "hi"}] * 20_000)
    wide = valid_body(**{f"x{i}": i for i in range(20_000)})
    parts = valid_body(messages=[{"role": "user", "content": [{"type": "text", "text": "p"}] * 20_000}])
    for body in (many, wide, parts):
        response = open_router.checked("POST", CHAT, json=body)
        assert response.status_code in (200, 400), response.text


def test_big_numbers_are_not_a_500(open_router: Harness) -> None:
    for raw in (
        b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":1' + b"0" * 5000 + b"}",
        b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":1e999}',
        b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"temperature":1e999}',
        b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"temperature":NaN}',
        b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":-Infinity}',
    ):
        response = open_router.post_raw(CHAT, raw)
        check_response(response, sent=raw)
        assert response.status_code in (200, 400), response.text


def test_duplicate_keys_are_not_a_500(open_router: Harness) -> None:
    raw = b'{"model":"auto","model":5,"messages":[{"role":"user","content":"hi"}]}'
    response = open_router.post_raw(CHAT, raw)
    check_response(response, sent=raw)
    assert response.status_code == 400, response.text


# -- content types, methods, paths -----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
def test_wrong_content_type_is_a_415(open_router: Harness, content_type: str) -> None:
    content = json.dumps(valid_body()).encode()
    response = open_router.post_raw(CHAT, content, content_type)
    check_response(response, sent=content)
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", CHAT, 405),
        ("PUT", CHAT, 405),
        ("DELETE", EXPLAIN, 405),
        ("POST", "/v1/models", 405),
        ("PATCH", "/v1/router/status", 405),
        ("GET", "/v1/nope", 404),
        ("POST", "/v1/completions", 404),
        ("GET", "/%ff%fe", 404),
        ("GET", "/" + "a" * 5000, 404),
    ],
)
def test_wrong_method_or_path(open_router: Harness, method: str, path: str, status: int) -> None:
    response = open_router.checked(method, path, json=valid_body() if method != "GET" else None)
    assert response.status_code == status, response.text


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic rk-1",
        "Bearer rk-2",
        "Bearer rk-1x",
        "rk-1",
        "Bearer\trk-1",
        "Bearer sk-test-openai-SECRET123",
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", CHAT), ("POST", EXPLAIN), ("GET", "/v1/models"), ("GET", "/v1/router/status")],
)
def test_missing_or_wrong_router_key_is_a_401(
    authed: Harness, header: str | None, method: str, path: str
) -> None:
    headers = {} if header is None else {"authorization": header}
    response = authed.request(
        method, path, headers=headers, authenticate=False, json=valid_body() if method == "POST" else None
    )
    check_response(response)
    assert response.status_code == 401, response.text


def test_non_ascii_auth_header_is_a_401(authed: Harness) -> None:
    for raw in (b"Bearer rk-1\xff", b"Bearer \xe2\x82\xac", b"\xff\xfe"):
        response = authed.request("GET", "/v1/models", headers={"authorization": raw}, authenticate=False)
        check_response(response)
        assert response.status_code == 401, response.text


@pytest.mark.parametrize("header", ["Bearer rk-1", "bearer rk-1", "Bearer  rk-1 "])
def test_right_router_key_is_served(authed: Harness, header: str) -> None:
    response = authed.checked("POST", CHAT, headers={"authorization": header}, json=valid_body())
    assert response.status_code == 200, response.text


def test_auth_is_checked_before_the_body(authed: Harness) -> None:
    """A bad body without a key is a 401 (not a 400 that tells a stranger about parsing)."""
    for content in (b"{", deep_array(10_000).encode(), b"\xff"):
        response = authed.request("POST", CHAT, content=content, authenticate=False)
        check_response(response, sent=content)
        assert response.status_code == 401, response.text


# -- still serving ---------------------------------------------------------------------------


def test_still_serving_after_the_fuzzing(open_router: Harness, small: Harness, authed: Harness) -> None:
    for harness in (open_router, small, authed):
        harness.assert_alive()
