"""Translation between the OpenAI Chat Completions API and Anthropic's native Messages API.

Pure functions over plain dicts: no network, no HTTP client, no routing knowledge, and no
pydantic models on the hot path. The proxy calls :func:`build_request` / :func:`build_headers`
before sending, then :func:`parse_response` (buffered) or a :class:`StreamTranslator` (SSE).

Deliberate choices (each one is a place where the two APIs do not line up):

Request (OpenAI -> Anthropic)
* ``system`` and ``developer`` messages are hoisted, in order, into the top-level ``system``
  wherever they appear (Anthropic has no mid-conversation system turn). One plain block
  becomes a string; several blocks (or any ``cache_control``) stay a list of text blocks.
* Consecutive same-role turns are merged because Anthropic requires strict alternation;
  ``tool`` messages become ``tool_result`` blocks in a user turn, and ``tool_result`` blocks
  are moved to the front of their user turn, as Anthropic requires.
* A conversation whose first turn is ``assistant`` (e.g. a bot greeting) gets a one-character
  user turn ``"."`` prepended rather than being rejected: OpenAI accepts such conversations
  and the placeholder steers the model as little as possible.
* A trailing assistant turn is an Anthropic "prefill"; its trailing whitespace is stripped
  because Anthropic rejects a prefill that ends in whitespace.
* Empty text parts are skipped and turns left empty are dropped (Anthropic rejects empty
  text blocks and empty turns). Message ``name`` fields are ignored (no equivalent).
* ``cache_control`` on a text/image/file part is passed through, so clients that know about
  Anthropic prompt caching (an OpenRouter-style extension) keep working.
* Images: ``data:`` URLs become base64 sources, http(s) URLs become url sources; ``detail``
  is ignored. ``file`` parts carrying a base64 PDF become ``document`` blocks. Audio parts,
  ``file_id`` references and any unknown part type raise :class:`TranslationError`.
* Tool-call ``arguments`` must be a JSON object; ``""`` is accepted as ``{}`` (some clients
  send it for argument-less functions). ``strict`` on a function tool is dropped.
* ``tool_choice``: "auto" -> auto, "required" -> any, "none" -> none (the tools stay defined
  so a history containing ``tool_use`` blocks remains valid), named -> ``tool``.
  ``parallel_tool_calls: false`` -> ``disable_parallel_tool_use: true``.
* ``temperature`` is validated against OpenAI's 0..2 range, then clamped to Anthropic's 0..1
  (values above 1 become 1; we clamp rather than scale so 0.7 means the same on both sides).
  ``top_p`` is passed through; both are sent if both are given (some models reject that
  combination upstream, and only the model knows).
* ``max_completion_tokens`` wins over the deprecated ``max_tokens``; Anthropic requires a value,
  so ``default_max_tokens`` is used when neither is given.
* ``safety_identifier`` (or the older ``user``) -> ``metadata.user_id``.
* ``response_format``: ``json_object`` and ``json_schema`` become an instruction appended to
  ``system`` (for ``json_schema`` the schema itself is included). This is best effort: Anthropic
  does not enforce it, so ``strict`` is not guaranteed. ``text`` is a no-op.
* Rejected with :class:`TranslationError` because we could not deliver what was asked for:
  ``n`` > 1, ``logprobs`` / ``top_logprobs``, audio output (``audio`` / ``modalities``),
  legacy ``functions`` / ``function_call`` / ``function`` role, ``web_search_options``, and
  non-function tools.
* Ignored because they are hints with no Anthropic equivalent: ``frequency_penalty``,
  ``presence_penalty``, ``logit_bias``, ``seed``, ``service_tier``, ``store``, ``metadata``,
  ``prediction``, ``reasoning_effort`` (we never enable extended thinking: its signed blocks
  could not round-trip through OpenAI-shaped history), ``verbosity``, ``prompt_cache_key``,
  ``stream_options`` (the proxy reads it), the body's ``model`` (the caller passes
  ``model_id``), and any other unknown field.

Response (Anthropic -> OpenAI)
* Text blocks are concatenated into ``content``; ``tool_use`` blocks become ``tool_calls`` with
  compact JSON ``arguments``. ``thinking`` / ``redacted_thinking`` and any other block type
  are dropped (OpenAI's schema has no place for them and we never request them).
* ``stop_reason``: end_turn/stop_sequence/pause_turn -> stop, max_tokens and
  model_context_window_exceeded -> length, tool_use -> tool_calls, refusal -> content_filter;
  ``pause_turn`` only happens with server tools, which we never send. Unknown reasons -> stop.
* Usage: ``prompt_tokens`` counts every input token (uncached + cache reads + cache writes),
  ``prompt_tokens_details.cached_tokens`` = cache reads and ``cache_write_tokens`` = cache
  writes (a field the OpenAI SDK knows), so cost accounting can price the three separately.
  Thinking tokens, when reported, become ``completion_tokens_details.reasoning_tokens``.
  The raw Anthropic usage stays available: ``data["usage"]`` for buffered responses and
  :attr:`StreamTranslator.raw_usage` for streams.
* Chunk and completion ids are ``chatcmpl-`` + the Anthropic message id without ``msg_``.

Streaming
* Tool-call ``index`` counts tool calls only (not Anthropic content blocks). A tool call whose
  input stayed empty gets an ``"{}"`` arguments fragment when its block stops, so the
  reassembled arguments are valid JSON just like the buffered translation.
* ``ping``, thinking/signature/citation deltas and unknown event types produce nothing
  (Anthropic says new event types may appear); an ``error`` event raises
  :class:`UpstreamStreamError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from tier_router.errors import RouterError, UpstreamError
from tier_router.providers.base import is_content_chunk  # one definition for every provider

__all__ = [
    "ANTHROPIC_VERSION",
    "StreamTranslator",
    "TranslationError",
    "UpstreamStreamError",
    "build_headers",
    "build_request",
    "is_content_chunk",
    "parse_response",
    "translate_error",
    "translate_usage",
]

ANTHROPIC_VERSION: Final = "2023-06-01"

PLACEHOLDER_USER_TEXT: Final = "."
"""First user turn inserted when an OpenAI conversation starts with the assistant."""

_IMAGE_MEDIA_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

_FINISH_REASONS: Final[dict[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type -> the OpenAI error ``type`` we report. OpenAI SDKs pick their exception
# class from the HTTP status, so this is informative rather than load-bearing.
_ERROR_TYPES: Final[dict[str, str]] = {
    "invalid_request_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "billing_error": "insufficient_quota",
    "rate_limit_error": "rate_limit_error",
    "api_error": "server_error",
    "overloaded_error": "server_error",
    "timeout_error": "timeout",
}

_JSON_OBJECT_INSTRUCTION: Final = (
    "Respond with a single valid JSON object and nothing else: no prose, no Markdown code fences."
)


class TranslationError(RouterError, ValueError):
    """A payload that cannot be translated.

    Raised by :func:`build_request` for bad client input (the proxy answers 400) and by
    :func:`parse_response` / :class:`StreamTranslator` for malformed upstream data (the proxy
    treats it as an upstream failure): the adapter turns it into the branch of the error tree
    it belongs to, ``ClientRequestError`` or ``UpstreamProtocolError``.
    """


class UpstreamStreamError(TranslationError, UpstreamError):
    """Anthropic sent an ``error`` event mid-stream (e.g. ``overloaded_error``): always the
    provider's failure."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


# --------------------------------------------------------------------------------------------
# Request: OpenAI chat-completions body -> Anthropic Messages body
# --------------------------------------------------------------------------------------------


def build_headers(api_key: str) -> dict[str, str]:
    """Headers for ``POST /v1/messages``; the version pins the wire format we translate to."""
    return {
        "x-api-key": api_key,
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
    }


def build_request(body: dict[str, Any], model_id: str, *, default_max_tokens: int = 4096) -> dict[str, Any]:
    """Translate an OpenAI chat-completions request body into an Anthropic Messages body."""
    if not isinstance(body, dict):
        raise TranslationError("request body must be a JSON object")
    _reject_unsupported(body)

    system, messages = _translate_messages(body.get("messages"))
    instruction = _response_format_instruction(body.get("response_format"))
    if instruction:
        system.append({"type": "text", "text": instruction})

    out: dict[str, Any] = {
        "model": model_id,
        "max_tokens": _max_tokens(body, default_max_tokens),
        "messages": messages,
    }
    if system:
        out["system"] = _collapse_system(system)

    temperature = body.get("temperature")
    if temperature is not None:
        out["temperature"] = min(_number(temperature, "temperature", 0.0, 2.0), 1.0)
    top_p = body.get("top_p")
    if top_p is not None:
        out["top_p"] = _number(top_p, "top_p", 0.0, 1.0)
    stop = _stop_sequences(body.get("stop"))
    if stop:
        out["stop_sequences"] = stop

    tools = body.get("tools")
    if tools:
        out["tools"] = _translate_tools(tools)
        tool_choice = _translate_tool_choice(
            body.get("tool_choice"), {t["name"] for t in out["tools"]}, body.get("parallel_tool_calls")
        )
        if tool_choice is not None:
            out["tool_choice"] = tool_choice
    elif body.get("tool_choice") not in (None, "auto", "none"):
        raise TranslationError("tool_choice requires tools")

    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    return out


def _reject_unsupported(body: dict[str, Any]) -> None:
    """Refuse features whose output we could not produce, instead of silently omitting it."""
    n = body.get("n")
    if n is not None and n != 1:
        raise TranslationError("n > 1 is not supported by this provider")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise TranslationError("logprobs are not supported by this provider")
    if body.get("audio") is not None or "audio" in (body.get("modalities") or ()):
        raise TranslationError("audio output is not supported by this provider")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise TranslationError("legacy 'functions' / 'function_call' are not supported; use 'tools'")
    if body.get("web_search_options") is not None:
        raise TranslationError("web_search_options is not supported by this provider")


def _max_tokens(body: dict[str, Any], default: int) -> int:
    value = body.get("max_completion_tokens")
    field = "max_completion_tokens"
    if value is None:
        value, field = body.get("max_tokens"), "max_tokens"
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TranslationError(f"{field} must be a positive integer")
    return value


def _number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise TranslationError(f"{field} must be a number between {low:g} and {high:g}")
    return value


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise TranslationError("stop must be a string or a list of strings")
    return [s for s in stop if s]


def _collapse_system(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone plain block reads best as a string; keep blocks when boundaries matter (caching)."""
    if len(blocks) == 1 and "cache_control" not in blocks[0]:
        return blocks[0]["text"]
    return blocks


def _response_format_instruction(response_format: Any) -> str | None:
    """Anthropic has no JSON mode, so the request for one becomes a system instruction."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return _JSON_OBJECT_INSTRUCTION
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise TranslationError("response_format.json_schema.schema must be an object")
        lines = [
            "Respond with a single JSON value that conforms to the JSON Schema below and nothing else:"
            " no prose, no Markdown code fences."
        ]
        if spec.get("name"):
            lines.append(f"Schema name: {spec['name']}")
        if spec.get("description"):
            lines.append(f"Schema description: {spec['description']}")
        lines.append(json.dumps(schema, separators=(",", ":"), ensure_ascii=False))
        return "\n".join(lines)
    raise TranslationError(f"unsupported response_format type: {kind!r}")


# -- messages ---------------------------------------------------------------------------------


def _translate_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split OpenAI messages into Anthropic system blocks and alternating user/assistant turns."""
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty list")

    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise TranslationError(f"{where} must be an object")
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(msg.get("content"), where))
            continue
        if role == "user":
            blocks = _user_blocks(msg.get("content"), where)
        elif role == "assistant":
            blocks = _assistant_blocks(msg, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result_block(msg, where)]
        elif role == "function":
            raise TranslationError(f"{where}: legacy 'function' role is not supported; use 'tool'")
        else:
            raise TranslationError(f"{where}: unsupported role {role!r}")

        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for turn in turns:
        if turn["role"] == "user":
            # Stable sort: tool results first (Anthropic requires it), other blocks keep their order.
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    if turns and turns[-1]["role"] == "assistant":
        _strip_prefill(turns)
    if not turns:
        raise TranslationError("messages must contain at least one non-empty user or assistant message")
    if turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": PLACEHOLDER_USER_TEXT}]})
    return system, turns


def _strip_prefill(turns: list[dict[str, Any]]) -> None:
    """Anthropic rejects a final assistant turn ending in whitespace; trim it (or drop it if empty)."""
    last = turns[-1]
    if last["content"][-1]["type"] != "text":
        return
    block = last["content"][-1]
    block["text"] = block["text"].rstrip()
    if not block["text"]:
        last["content"].pop()
        if not last["content"]:
            turns.pop()


def _text_block(text: Any, part: dict[str, Any] | None, where: str) -> dict[str, Any] | None:
    if not isinstance(text, str):
        raise TranslationError(f"{where}: text must be a string")
    if not text:
        return None
    return _cached({"type": "text", "text": text}, part)


def _cached(block: dict[str, Any], part: dict[str, Any] | None) -> dict[str, Any]:
    """The block, with the part's ``cache_control`` (Anthropic prompt caching) if it has one."""
    if part is not None and "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _text_part(part: dict[str, Any], where: str) -> dict[str, Any] | None:
    return _text_block(part.get("text"), part, where)


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Content that may only hold text (system, developer, tool)."""
    return _blocks(content, where, _TEXT_PARTS)


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    return _blocks(content, where, _USER_PARTS)


def _blocks(content: Any, where: str, parts: _Parts) -> list[dict[str, Any]]:
    """A string, or a list of parts each turned into a block by the builder for its type."""
    if isinstance(content, str):
        block = _text_block(content, None, where)
        return [block] if block else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}: content must be a string or a list of {parts.name}")
    blocks = []
    for j, part in enumerate(content):
        part_where = f"{where}.content[{j}]"
        build = parts.builders.get(part.get("type")) if isinstance(part, dict) else None
        if build is None:
            raise TranslationError(f"{part_where}: {parts.refusal(part)}")
        block = build(part, part_where)
        if block:
            blocks.append(block)
    return blocks


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise TranslationError(f"{where}: image_url.url must be a string")
    if url.startswith("data:"):
        media_type, data = _parse_data_url(url, where)
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise TranslationError(f"{where}: unsupported image media type {media_type!r}")
        source: dict[str, Any] = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise TranslationError(f"{where}: image_url.url must be a data: or http(s) URL")
    return _cached({"type": "image", "source": source}, part)


def _document_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    """OpenAI ``file`` parts with inline PDF data map onto Anthropic ``document`` blocks."""
    file = part.get("file")
    file_data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(file_data, str):
        raise TranslationError(f"{where}: only inline file_data is supported (file_id cannot be resolved)")
    if not file_data.startswith("data:"):
        raise TranslationError(f"{where}: file_data must be a data: URL")
    media_type, data = _parse_data_url(file_data, where)
    if media_type != "application/pdf":
        raise TranslationError(f"{where}: unsupported file media type {media_type!r} (only PDF)")
    source = {"type": "base64", "media_type": media_type, "data": data}
    return _cached({"type": "document", "source": source}, part)


class _Parts(NamedTuple):
    """The content parts a message may hold: a block builder per part type."""

    builders: dict[str, Callable[[dict[str, Any], str], dict[str, Any] | None]]
    name: str
    refusal: Callable[[Any], str]
    """Why a part is refused."""


def _only_text(part: Any) -> str:
    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
    return f"only text parts are allowed here, got {kind!r}"


def _unsupported(part: Any) -> str:
    return f"unsupported content part type {part.get('type') if isinstance(part, dict) else None!r}"


_TEXT_PARTS = _Parts({"text": _text_part}, "text parts", _only_text)
_USER_PARTS = _Parts(
    {"text": _text_part, "image_url": _image_block, "file": _document_block}, "content parts", _unsupported
)


def _parse_data_url(url: str, where: str) -> tuple[str, str]:
    """``data:<media type>;base64,<payload>`` -> (media type, payload); base64 is required."""
    header, sep, payload = url[len("data:") :].partition(",")
    params = header.split(";")
    if not sep or not payload or "base64" not in params[1:]:
        raise TranslationError(f"{where}: data URL must be base64-encoded ('data:<type>;base64,<data>')")
    return params[0].strip().lower(), payload


def _assistant_blocks(msg: dict[str, Any], where: str) -> list[dict[str, Any]]:
    content = msg.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        block = _text_block(content, None, where)
        if block:
            blocks.append(block)
    elif isinstance(content, list):
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            # A refusal the model produced earlier is still something it said.
            if kind in ("text", "refusal"):
                block = _text_block(part.get(kind), part, f"{where}.content[{j}]")
                if block:
                    blocks.append(block)
            else:
                raise TranslationError(f"{where}.content[{j}]: unsupported assistant content part {kind!r}")
    elif content is not None:
        raise TranslationError(f"{where}: content must be a string, a list of parts or null")

    tool_calls = msg.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise TranslationError(f"{where}: tool_calls must be a list")
    for k, call in enumerate(tool_calls):
        blocks.append(_tool_use_block(call, f"{where}.tool_calls[{k}]"))
    return blocks


def _tool_use_block(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        raise TranslationError(f"{where}: only function tool calls are supported")
    function = call.get("function")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}: id is required")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise TranslationError(f"{where}: function.name is required")
    return {
        "type": "tool_use",
        "id": call_id,
        "name": function["name"],
        "input": _parse_arguments(function.get("arguments"), where),
    }


def _parse_arguments(arguments: Any, where: str) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if not isinstance(arguments, str):
        raise TranslationError(f"{where}: function.arguments must be a JSON string")
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise TranslationError(f"{where}: function.arguments is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise TranslationError(f"{where}: function.arguments must encode a JSON object")
    return value


def _tool_result_block(msg: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}: tool_call_id is required for tool messages")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        texts = _text_blocks(content, where)
        if texts:
            block["content"] = texts
    return block


# -- tools ------------------------------------------------------------------------------------


def _translate_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise TranslationError("tools must be a list")
    out = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise TranslationError(f"{where}: only function tools are supported, got {kind!r}")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise TranslationError(f"{where}: function.name is required")
        translated: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            translated["description"] = function["description"]
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        elif not isinstance(parameters, dict):
            raise TranslationError(f"{where}: function.parameters must be a JSON Schema object")
        translated["input_schema"] = parameters
        out.append(translated)
    return out


def _translate_tool_choice(choice: Any, names: set[str], parallel: Any) -> dict[str, Any] | None:
    """OpenAI ``tool_choice`` + ``parallel_tool_calls`` -> Anthropic ``tool_choice`` (None: its default)."""
    if choice is None or choice == "auto":
        translated: dict[str, Any] = {"type": "auto"}
    elif choice == "required":
        translated = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if name not in names:
            raise TranslationError(f"tool_choice names a function that is not in tools: {name!r}")
        translated = {"type": "tool", "name": name}
    else:
        raise TranslationError(f"unsupported tool_choice: {choice!r}")

    if parallel is False:
        translated["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # Anthropic's default is already auto with parallel calls allowed.
    return translated


# --------------------------------------------------------------------------------------------
# Response: Anthropic message -> OpenAI chat.completion
# --------------------------------------------------------------------------------------------


def parse_response(data: dict[str, Any], *, created: int) -> dict[str, Any]:
    """Translate a buffered Anthropic message into an OpenAI ``chat.completion`` object."""
    if not isinstance(data, dict):
        raise TranslationError("upstream response is not a JSON object")
    if data.get("type") == "error":
        _, message = translate_error(0, data)
        raise TranslationError(f"upstream returned an error body: {message}")
    content = data.get("content")
    if data.get("type", "message") != "message" or not isinstance(data.get("id"), str):
        raise TranslationError("upstream response is not an Anthropic message")
    if not isinstance(content, list):
        raise TranslationError("upstream message has no content list")

    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block))
        # thinking, redacted_thinking and future block types have no OpenAI representation.

    text = "".join(texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls

    result: dict[str, Any] = {
        "id": _completion_id(data["id"]),
        "object": "chat.completion",
        "created": created,
        "model": data.get("model") or "",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(data.get("stop_reason")),
            }
        ],
    }
    usage = data.get("usage")
    if isinstance(usage, dict):
        result["usage"] = translate_usage(usage)
    return result


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise TranslationError("upstream tool_use block lacks an id or name")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": _compact_json(block.get("input") or {})},
    }


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _completion_id(message_id: str) -> str:
    return "chatcmpl-" + message_id.removeprefix("msg_")


def _finish_reason(stop_reason: Any) -> str:
    return _FINISH_REASONS.get(stop_reason, "stop")


def translate_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage -> OpenAI usage, keeping cache reads and writes separately visible."""
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_write = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cache_read + cache_write
    completion = usage.get("output_tokens") or 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
    }
    creation = usage.get("cache_creation")
    if isinstance(creation, dict) and creation.get("ephemeral_1h_input_tokens"):
        # 1-hour cache writes bill at 2x input (5-minute ones at 1.25x): keep the split for pricing
        out["prompt_tokens_details"]["cache_write_1h_tokens"] = creation["ephemeral_1h_input_tokens"]
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and details.get("thinking_tokens") is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": details["thinking_tokens"]}
    return out


# --------------------------------------------------------------------------------------------
# Streaming: Anthropic SSE events -> OpenAI chat.completion.chunk dicts
# --------------------------------------------------------------------------------------------


class StreamTranslator:
    """Turns one Anthropic SSE stream into OpenAI chunks, one event at a time.

    Stateful because OpenAI chunks need things Anthropic sends once (id, model) and tool-call
    indexes that Anthropic does not have (its indexes count all content blocks).
    """

    def __init__(self, *, created: int, include_usage: bool) -> None:
        self.created = created
        self.include_usage = include_usage
        self.id: str | None = None
        self.model: str | None = None
        self.raw_usage: dict[str, Any] | None = None
        """Anthropic-shaped usage merged from message_start and message_delta (for pricing)."""
        self.finished = False
        self._finish_sent = False
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool-call index
        self._tool_has_args: dict[int, bool] = {}  # Anthropic block index -> any fragment sent yet

    @property
    def usage(self) -> dict[str, Any] | None:
        """OpenAI-shaped usage once known (input from message_start, output from message_delta)."""
        return translate_usage(self.raw_usage) if self.raw_usage is not None else None

    def feed(self, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Translate one Anthropic SSE event into zero or more OpenAI chunks."""
        if not isinstance(data, dict):
            raise TranslationError(f"upstream {event or 'SSE'} event data is not a JSON object")
        if not event or event == "message":  # unnamed SSE event: fall back to the payload's type
            event = data.get("type") or ""

        if event == "content_block_delta":
            return self._on_block_delta(data)
        if event == "ping":
            return []
        if event == "content_block_start":
            return self._on_block_start(data)
        if event == "content_block_stop":
            return self._on_block_stop(data)
        if event == "message_start":
            return self._on_message_start(data)
        if event == "message_delta":
            return self._on_message_delta(data)
        if event == "message_stop":
            return self._on_message_stop()
        if event == "error":
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            raise UpstreamStreamError(
                str(error.get("type") or "api_error"), str(error.get("message") or "upstream stream error")
            )
        return []  # Anthropic may add event types; ignoring them is the documented contract.

    # -- event handlers ---------------------------------------------------------------------

    def _on_message_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        message = data.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("id"), str):
            raise TranslationError("upstream message_start event has no message id")
        if self.id is not None:
            raise TranslationError("upstream sent message_start twice")
        self.id = _completion_id(message["id"])
        self.model = message.get("model") or ""
        usage = message.get("usage")
        self.raw_usage = dict(usage) if isinstance(usage, dict) else {}
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_block_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self._require_started("content_block_start")
        block = data.get("content_block")
        index = data.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            raise TranslationError("upstream content_block_start event is malformed")
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind != "tool_use":
            return []  # thinking, redacted_thinking and future block types are not exposed
        call_id, name = block.get("id"), block.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise TranslationError("upstream tool_use block lacks an id or name")
        tool_index = len(self._tool_index)
        self._tool_index[index] = tool_index
        self._tool_has_args[index] = False
        call = {
            "index": tool_index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _on_block_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self._require_started("content_block_delta")
        delta = data.get("delta")
        if not isinstance(delta, dict):
            raise TranslationError("upstream content_block_delta event has no delta")
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind == "input_json_delta":
            index = data.get("index")
            if index not in self._tool_index:
                raise TranslationError(f"upstream input_json_delta for unknown tool block {index!r}")
            fragment = delta.get("partial_json")
            if not fragment:
                return []
            self._tool_has_args[index] = True
            return [self._tool_arguments_chunk(index, fragment)]
        return []  # thinking_delta, signature_delta, citations_delta, future delta types

    def _on_block_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        index = data.get("index")
        if index in self._tool_index and not self._tool_has_args[index]:
            # No input streamed: say "{}" so the reassembled arguments are valid JSON.
            self._tool_has_args[index] = True
            return [self._tool_arguments_chunk(index, "{}")]
        return []

    def _on_message_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self._require_started("message_delta")
        usage = data.get("usage")
        if isinstance(usage, dict) and self.raw_usage is not None:
            # Delta usage is cumulative; input/cache fields may be null when unchanged.
            self.raw_usage.update({k: v for k, v in usage.items() if v is not None})
        delta = data.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop_reason is None or self._finish_sent:
            return []
        self._finish_sent = True
        return [self._chunk({}, _finish_reason(stop_reason))]

    def _on_message_stop(self) -> list[dict[str, Any]]:
        self._require_started("message_stop")
        if self.finished:
            return []
        self.finished = True
        chunks = []
        if not self._finish_sent:  # never got a stop_reason; clients still need a finish_reason
            self._finish_sent = True
            chunks.append(self._chunk({}, "stop"))
        if self.include_usage:
            chunks.append(self._envelope([], self.usage))
        return chunks

    # -- chunk builders ---------------------------------------------------------------------

    def _require_started(self, event: str) -> None:
        if self.id is None:
            raise TranslationError(f"upstream sent {event} before message_start")

    def _tool_arguments_chunk(self, block_index: int, fragment: str) -> dict[str, Any]:
        call = {"index": self._tool_index[block_index], "function": {"arguments": fragment}}
        return self._chunk({"tool_calls": [call]})

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope([choice], None)

    def _envelope(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:  # OpenAI sends usage: null on every chunk but the last
            chunk["usage"] = usage
        return chunk


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def translate_error(status: int, data: dict[str, Any] | None) -> tuple[str, str]:
    """Anthropic error body (``{"type": "error", "error": {"type", "message"}}``) -> (type, message).

    Tolerates a missing or non-JSON body (e.g. a Cloudflare 413 page) by falling back on status.
    """
    error = data.get("error") if isinstance(data, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None

    openai_type = _ERROR_TYPES.get(kind) if isinstance(kind, str) else None
    if openai_type is None:
        if status == 429:
            openai_type = "rate_limit_error"
        elif status >= 500:
            openai_type = "server_error"
        else:
            openai_type = "invalid_request_error"
    if not isinstance(message, str) or not message:
        message = f"Anthropic API error (HTTP {status}{f', {kind}' if kind else ''})"
    return openai_type, message
