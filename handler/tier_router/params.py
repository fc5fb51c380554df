"""The OpenAI chat-completions parameters this router reads, translates or prices, checked as
OpenAI checks them: a wrong type or range is a 400 `invalid_request_error` naming the parameter
(`messages[2].content[0].type`) with OpenAI's code, before routing — `stream` picks the path, `n`
and the token limits bound the hard cap, sampling, tools and `response_format` are translated
for Anthropic, parts are priced by `type`: a value OpenAI refuses must not be acted on.

`PARAMS` lists what is checked; any other field is forwarded unchecked. Messages: a known
`role`; content null, a string or parts whose `type` the role allows (`ROLE_PARTS`); assistant
`tool_calls`; `tool_call_id` on tool messages. Null is accepted for every optional parameter,
an integer wherever a decimal is. Leniencies kept on purpose: `content` may be absent in any
role, a tool call's `type` may be left out, `image_url` may be a bare URL string, `stop` may be
empty; provider-specific enumerations (`reasoning_effort`, `service_tier`, ...) are only typed.

Sources: OpenAI's OpenAPI spec (`CreateChatCompletionRequest` bounds), openai-python's
`types/chat/*_param.py` (shapes), OpenAI's 400 answers (wording, codes: `param_errors`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from tier_router.param_errors import (
    KINDS,
    bad_request,
    enum,
    invalid_type,
    invalid_value,
    length,
    missing,
    out_of_range,
    shown,
    wrong,
)

# -- scalar checks (top-level parameters; None never reaches them) -----------------------------

Check = Callable[[Any, str], None]


def exact(kind: type) -> Check:
    expected = KINDS[kind]

    def check(value: Any, param: str) -> None:
        if value.__class__ is not kind:
            raise invalid_type(param, expected, value)

    return check


boolean, string, obj = exact(bool), exact(str), exact(dict)


def integer(low: int, high: int | None) -> Check:
    def check(value: Any, param: str) -> None:
        if value.__class__ is not int:
            raise invalid_type(param, "an integer", value)
        if value < low:
            raise out_of_range(param, "integer", value, low, above=False)
        if high is not None and value > high:
            raise out_of_range(param, "integer", value, high, above=True)

    return check


def decimal(low: float, high: float) -> Check:
    def check(value: Any, param: str) -> None:
        cls = value.__class__
        if cls is not float and cls is not int:  # bool is neither
            raise invalid_type(param, "a decimal", value)
        if value < low:
            raise out_of_range(param, "decimal", value, low, above=False)
        if value > high:
            raise out_of_range(param, "decimal", value, high, above=True)

    return check


def _optional(container: dict[str, Any], key: str, kind: type, where: str) -> None:
    value = container.get(key)
    if value is not None and value.__class__ is not kind:
        raise invalid_type(f"{where}.{key}", KINDS[kind], value)


def _required_str(container: dict[str, Any], key: str, where: str) -> None:
    value = container.get(key)
    if value.__class__ is not str:
        raise wrong(f"{where}.{key}", "a string", value)


def _required_obj(container: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = container.get(key)
    if value.__class__ is not dict:
        raise wrong(f"{where}.{key}", "an object", value)
    return value  # type: ignore[no-any-return]


def _array_of_objects(value: Any, param: str) -> list[Any]:
    if value.__class__ is not list:
        raise invalid_type(param, "an array of objects", value)
    for index, item in enumerate(value):
        if item.__class__ is not dict:
            raise invalid_type(f"{param}[{index}]", "an object", item)
    return value  # type: ignore[no-any-return]


# -- messages -------------------------------------------------------------------------------------

ROLES: Final = ("system", "assistant", "user", "function", "tool", "developer")  # OpenAI's order
TEXT_ONLY: Final = ("text",)
ROLE_PARTS: Final[dict[str, tuple[str, ...]]] = {
    "system": TEXT_ONLY,
    "developer": TEXT_ONLY,
    "tool": TEXT_ONLY,
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "function": (),  # content is a string or null
}
"""The content-part types each role may send (openai-python's `Chat*MessageParam` types)."""
NEEDS_FIELDS: Final = frozenset({"tool", "function"})
"""Roles with a required field besides role and content."""


def _image_url(part: dict[str, Any], where: str) -> None:
    image = part.get("image_url")
    if image.__class__ is str:  # a bare URL: not OpenAI's shape, but translated and forwarded today
        return
    _required_str(_required_obj(part, "image_url", where), "url", f"{where}.image_url")
    _optional(image, "detail", str, f"{where}.image_url")


def _input_audio(part: dict[str, Any], where: str) -> None:
    audio = _required_obj(part, "input_audio", where)
    _required_str(audio, "data", f"{where}.input_audio")
    _required_str(audio, "format", f"{where}.input_audio")


def _file(part: dict[str, Any], where: str) -> None:
    file = _required_obj(part, "file", where)
    for key in ("file_data", "file_id", "filename"):
        _optional(file, key, str, f"{where}.file")


def _refusal(part: dict[str, Any], where: str) -> None:
    _required_str(part, "refusal", where)


PAYLOADS: Final[dict[str, Callable[[dict[str, Any], str], None]]] = {
    "image_url": _image_url,
    "input_audio": _input_audio,
    "file": _file,
    "refusal": _refusal,
}


def _parts(content: list[Any], allowed: tuple[str, ...], i: int) -> None:
    for j, part in enumerate(content):
        if part.__class__ is not dict:
            raise invalid_type(f"messages[{i}].content[{j}]", "an object", part)
        kind = part.get("type")
        text = part.get("text")
        if kind == "text":
            if text.__class__ is not str:
                raise wrong(f"messages[{i}].content[{j}].text", "a string", text)
            continue
        where = f"messages[{i}].content[{j}]"
        if kind.__class__ is not str or kind not in allowed:
            raise enum(f"{where}.type", kind, allowed)
        if text is not None and text.__class__ is not str:  # routing reads `text` on any part
            raise invalid_type(f"{where}.text", "a string", text)
        PAYLOADS[kind](part, where)


def _tool_calls(calls: Any, i: int) -> None:
    where = f"messages[{i}].tool_calls"
    for k, call in enumerate(_array_of_objects(calls, where)):
        at = f"{where}[{k}]"
        _required_str(call, "id", at)
        kind = call.get("type")
        if kind is None or kind == "function":  # the type may be left out: a function call
            function = _required_obj(call, "function", at)
            _required_str(function, "name", f"{at}.function")
            _required_str(function, "arguments", f"{at}.function")
        elif kind == "custom":
            custom = _required_obj(call, "custom", at)
            _required_str(custom, "name", f"{at}.custom")
            _required_str(custom, "input", f"{at}.custom")
        else:
            raise enum(f"{at}.type", kind, ("function", "custom"))


def _plain_calls(calls: Any) -> bool:
    """True for a list of function calls of the usual shape (the common case, no names built)."""
    if calls.__class__ is not list:
        return False
    for call in calls:
        if call.__class__ is not dict or call.get("id").__class__ is not str:
            return False
        kind = call.get("type")
        function = call.get("function")
        if (kind is not None and kind != "function") or function.__class__ is not dict:
            return False
        if function.get("name").__class__ is not str or function.get("arguments").__class__ is not str:
            return False
    return True


def _message_fields(message: dict[str, Any], role: str, i: int) -> None:
    """The fields besides role and content, looked at when a message has them (or needs them);
    the usual tool call and tool result are checked inline by `messages`, without names."""
    where = f"messages[{i}]"
    name = message.get("name")
    if role == "function":
        _required_str(message, "name", where)
    elif name is not None and name.__class__ is not str:
        raise invalid_type(f"{where}.name", "a string", name)
    if role == "tool":
        _required_str(message, "tool_call_id", where)
    elif role == "assistant":
        calls = message.get("tool_calls")
        if calls is not None:
            _tool_calls(calls, i)
        _optional(message, "refusal", str, where)
        call = message.get("function_call")
        if call is not None:
            if call.__class__ is not dict:
                raise invalid_type(f"{where}.function_call", "an object", call)
            _required_str(call, "name", f"{where}.function_call")
            _required_str(call, "arguments", f"{where}.function_call")


def messages(value: Any, param: str) -> None:
    if value.__class__ is not list:
        raise invalid_type(param, "an array of objects", value)
    if not value:
        raise length(param, "array", 1, 0)
    role_parts, needs_fields = ROLE_PARTS, NEEDS_FIELDS
    for i, message in enumerate(value):
        if message.__class__ is not dict:
            raise invalid_type(f"messages[{i}]", "an object", message)
        role = message.get("role")
        allowed = role_parts.get(role) if role.__class__ is str else None
        if allowed is None:
            raise enum(f"messages[{i}].role", role, ROLES)
        content = message.get("content")
        if content is not None and content.__class__ is not str:
            if content.__class__ is not list or not allowed:
                expected = "one of a string or array of objects" if allowed else "a string"
                raise invalid_type(f"messages[{i}].content", expected, content)
            _parts(content, allowed, i)
        size = len(message)  # anything besides role and content?
        if size > 2 or role in needs_fields or (size == 2 and "content" not in message):
            if size == 3 and "content" in message:  # the usual tool result and tool call, inline
                if role == "tool" and message.get("tool_call_id").__class__ is str:
                    continue
                if role == "assistant" and _plain_calls(message.get("tool_calls")):
                    continue
            _message_fields(message, role, i)


# -- the other structured parameters ------------------------------------------------------------


def model(value: Any, param: str) -> None:
    string(value, param)
    if not value:
        raise length(param, "string", 1, 0)


def stream_options(value: Any, param: str) -> None:
    obj(value, param)
    _optional(value, "include_usage", bool, param)
    _optional(value, "include_obfuscation", bool, param)


MAX_STOP: Final = 4


def strings(value: Any, param: str, expected: str = "an array of strings") -> None:
    if value.__class__ is not list:
        raise invalid_type(param, expected, value)
    for index, item in enumerate(value):
        if item.__class__ is not str:
            raise invalid_type(f"{param}[{index}]", "a string", item)


def stop(value: Any, param: str) -> None:
    if value.__class__ is not str:
        strings(value, param, "one of a string or array of strings")
        if len(value) > MAX_STOP:
            raise length(param, "array", MAX_STOP, len(value))


METADATA_PAIRS: Final = 16
METADATA_KEY_CHARS: Final = 64
METADATA_VALUE_CHARS: Final = 512


def metadata(value: Any, param: str) -> None:
    obj(value, param)
    if len(value) > METADATA_PAIRS:
        message = (
            f"Invalid '{param}': too many properties. Expected an object with at most {METADATA_PAIRS} "
            f"properties, but got an object with {len(value)} properties instead."
        )
        raise bad_request(message, param, "object_above_max_properties")
    for key, item in value.items():
        if len(key) > METADATA_KEY_CHARS:
            message = (
                f"Invalid property name in '{param}': '{shown(key)}' is too long. Expected a string with "
                f"maximum length {METADATA_KEY_CHARS}, but got a string with length {len(key)} instead."
            )
            raise bad_request(message, f"{param}.{shown(key)}", "property_name_above_max_length")
        if item.__class__ is not str:
            raise invalid_type(f"{param}.{key}", "a string", item)
        if len(item) > METADATA_VALUE_CHARS:
            raise length(f"{param}.{key}", "string", METADATA_VALUE_CHARS, len(item))


_bias = integer(-100, 100)


def logit_bias(value: Any, param: str) -> None:
    obj(value, param)
    for token, bias in value.items():
        _bias(bias, f"{param}.{shown(token)}")


def _function(function: dict[str, Any], where: str) -> None:
    _required_str(function, "name", where)
    _optional(function, "parameters", dict, where)
    _optional(function, "description", str, where)
    _optional(function, "strict", bool, where)


TOOL_TYPES: Final = ("function", "custom")


def tools(value: Any, param: str) -> None:
    for i, tool in enumerate(_array_of_objects(value, param)):
        where = f"{param}[{i}]"
        kind = tool.get("type")
        if kind == "function":
            _function(_required_obj(tool, "function", where), f"{where}.function")
        elif kind == "custom":
            _required_str(_required_obj(tool, "custom", where), "name", f"{where}.custom")
        else:
            raise enum(f"{where}.type", kind, TOOL_TYPES)


def functions(value: Any, param: str) -> None:
    for i, function in enumerate(_array_of_objects(value, param)):
        _function(function, f"{param}[{i}]")


TOOL_CHOICES: Final = ("none", "auto", "required")
NAMED_CHOICES: Final = ("function", "custom", "allowed_tools")


def tool_choice(value: Any, param: str) -> None:
    if value.__class__ is str:
        if value not in TOOL_CHOICES:
            raise invalid_value(param, value, TOOL_CHOICES)
        return
    if value.__class__ is not dict:
        raise invalid_type(param, "one of 'none', 'auto', 'required' or an object", value)
    kind = value.get("type")
    if kind == "function" or kind == "custom":
        _required_str(_required_obj(value, kind, param), "name", f"{param}.{kind}")
    elif kind == "allowed_tools":
        allowed = _required_obj(value, "allowed_tools", param)
        mode = allowed.get("mode")
        if mode != "auto" and mode != "required":
            raise enum(f"{param}.allowed_tools.mode", mode, ("auto", "required"))
        _array_of_objects(allowed.get("tools"), f"{param}.allowed_tools.tools")
    else:
        raise enum(f"{param}.type", kind, NAMED_CHOICES)


def function_call(value: Any, param: str) -> None:
    if value.__class__ is str:
        if value != "none" and value != "auto":
            raise invalid_value(param, value, ("none", "auto"))
        return
    if value.__class__ is not dict:
        raise invalid_type(param, "one of 'none', 'auto' or an object", value)
    _required_str(value, "name", param)


FORMATS: Final = ("json_object", "json_schema", "text")


def response_format(value: Any, param: str) -> None:
    obj(value, param)
    kind = value.get("type")
    if kind == "json_schema":
        where = f"{param}.json_schema"
        spec = _required_obj(value, "json_schema", param)
        _required_str(spec, "name", where)
        _optional(spec, "schema", dict, where)
        _optional(spec, "description", str, where)
        _optional(spec, "strict", bool, where)
    elif kind != "text" and kind != "json_object":
        raise enum(f"{param}.type", kind, FORMATS)


PARAMS: Final[dict[str, Check]] = {
    "model": model,
    "messages": messages,
    **dict.fromkeys(("stream", "logprobs", "parallel_tool_calls", "store"), boolean),
    "stream_options": stream_options,
    "n": integer(1, 128),
    **dict.fromkeys(("max_tokens", "max_completion_tokens"), integer(1, None)),
    "temperature": decimal(0, 2),
    "top_p": decimal(0, 1),
    **dict.fromkeys(("presence_penalty", "frequency_penalty"), decimal(-2, 2)),
    "seed": integer(-(2**63), 2**63 - 1),
    "stop": stop,
    "top_logprobs": integer(0, 20),
    "logit_bias": logit_bias,
    "tools": tools,
    "tool_choice": tool_choice,
    "functions": functions,
    "function_call": function_call,
    "response_format": response_format,
    **dict.fromkeys(
        ("user", "safety_identifier", "prompt_cache_key", "service_tier", "reasoning_effort"), string
    ),
    "metadata": metadata,
    "modalities": strings,
    "audio": obj,
}
"""Every parameter checked, by name; any other top-level field is forwarded unchecked."""
REQUIRED: Final = ("model", "messages")


def check(body: dict[str, Any]) -> None:
    """Raise an OpenAI-style 400 `APIError` for the first parameter of `body` (a JSON object)
    that OpenAI would refuse for its type or range; return None when there is none."""
    for name in REQUIRED:
        if body.get(name) is None:
            raise missing(name)
    table = PARAMS
    for name, value in body.items():
        if value is not None:
            checker = table.get(name)
            if checker is not None:
                checker(value, name)
