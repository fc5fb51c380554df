"""An upper bound, by construction, on what a chat request can be billed — the hard cap's input.

Computed only when a budget cap is configured (one walk over the parsed body, no serialisation), and
never used for routing conditions (those keep `routing.tokens.estimate_tokens`, a cheap
chars/4 guess that real tokenizers can exceed ~4× on CJK, emoji or random bytes).

Input tokens ≤ `Bound.input_tokens`, which counts:

* every string of the body, keys and values (message text, assistant `tool_calls` names
  and arguments, `tools` / `functions` definitions, `response_format` schemas, `input_audio`
  data, anything else a provider may bill; not `UNBILLED_FIELDS`: model, sampling and
  limits) at ONE TOKEN PER UTF-8 BYTE of its JSON form (escapes counted), plus the bytes of
  compact JSON punctuation and of numbers. Every tokenizer in use (byte-level BPE:
  OpenAI, Anthropic, Llama 3; SentencePiece with byte fallback: Gemini, Llama 2) emits at
  least one byte of text per token, so no text can bill more tokens than it has bytes;
  JSON punctuation covers the providers' own rendering of tool schemas.
* `MESSAGE_OVERHEAD_TOKENS` per message and `REQUEST_OVERHEAD_TOKENS` once (chat template
  tokens), and `TOOLS_OVERHEAD_TOKENS` when tools or functions are present (Anthropic
  adds a 346-token tool-use system prompt).
* each image part (`image_url`, `input_image`, `image`) as `image_tokens` instead of the
  bytes of its URL or base64 data. The default, 4,000, bounds every documented per-image
  rule: OpenAI's high-detail tiles (≤ 8 tiles × 170 + 85 = 1,445 tokens for a 768×2048
  image; gpt-4o, gpt-4.1, o-series), OpenAI's 32-px patches (≤ 1,536 patches × 2.46 =
  3,779 for gpt-4.1-nano), Anthropic (long edge ≤ 1,568 px, ≈ 1,600 tokens). Models that
  bill images as many cheap tokens (gpt-4o-mini: ≤ 2,833 + 8 × 5,667 = 48,169) need
  `budgets.image_tokens` raised.
* audio (`input_audio.data`, base64) at one token per base64 character: billing more
  would need audio under 192 bit/s at Gemini's 32 tokens/s (OpenAI bills 10/s), far below
  any codec the APIs accept.
* file parts (`file`, `input_file`: PDFs bill an image per page, and `file_id` has no size
  here) cannot be bounded: `Unbounded` — the caller refuses them with a 400 when a hard
  cap applies.

Output tokens ≤ `n` × the per-choice limit: `max_tokens` / `max_completion_tokens` (the
larger when both are given), capped by the model's `max_output`; the model's `max_output`
when the request gives none; `default_max_output_tokens` when neither does. Cache writes
(any `cache_control` in the body) are priced at the dearest write multiplier (2×).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tier_router.errors import RequestError

if TYPE_CHECKING:
    from tier_router.schema import Price

IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
FILE_PART_TYPES = frozenset({"file", "input_file"})
_IMAGE_PAYLOAD = frozenset({"image_url", "input_image", "image", "source"})
UNBILLED_FIELDS = frozenset(
    {
        "model", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens", "temperature",
        "top_p", "presence_penalty", "frequency_penalty", "seed", "user", "metadata", "store",
        "logprobs", "top_logprobs", "logit_bias", "parallel_tool_calls", "service_tier",
        "reasoning_effort", "stop", "modalities",
    }
)  # fmt: skip
"""Top-level request parameters no provider renders into the prompt: not counted. Every other
field (messages, tools, functions, tool_choice, response_format, prediction, audio, unknown
ones) is."""
MESSAGE_OVERHEAD_TOKENS = 8
REQUEST_OVERHEAD_TOKENS = 16
TOOLS_OVERHEAD_TOKENS = 512
CACHE_WRITE_MAX_MULTIPLIER = 2.0  # Anthropic's 1-hour cache writes; 5-minute ones are 1.25×
MAX_N = 128  # OpenAI's own limit on `n`


class Unbounded(RequestError):
    """The request's cost has no upper bound (a file part); `param` names where."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Bound:
    input_tokens: int  # billed input tokens cannot exceed this
    max_tokens: int | None  # the request's per-choice output limit, if it gives one
    n: int  # choices
    cache_writes: bool  # the body asks for prompt caching (`cache_control`)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _utf8(text: str) -> int:
    """UTF-8 bytes of `text` as JSON may carry it into a prompt (a schema, tool arguments): a
    quote or backslash is escaped in two bytes, a control character in up to six (`\u0007`)."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    escaped = text.count('"') + text.count("\\")
    if _CONTROL.search(text) is not None:
        escaped += 5 * len(_CONTROL.findall(text))
    return size + escaped


def _limit(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float) and math.isfinite(value) and value > 0:
        return math.ceil(value)
    return None


def choices(value: Any) -> int:
    """`n` as the provider will read it; a value no provider accepts raises Unbounded."""
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Unbounded("'n' must be an integer between 1 and 128.", "n")
    count = math.ceil(value)
    if not 1 <= count <= MAX_N:
        raise Unbounded("'n' must be an integer between 1 and 128.", "n")
    return count


def bound(body: dict[str, Any], image_tokens: int) -> Bound:
    """The bound for one (validated) chat body. Raises Unbounded for file parts or a bad `n`."""
    messages = body.get("messages") or []
    total = REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS * len(messages)
    if body.get("tools") or body.get("functions"):
        total += TOOLS_OVERHEAD_TOKENS
    cache_writes = False
    stack: list[Any] = [value for key, value in body.items() if key not in UNBILLED_FIELDS]
    total += 2 + sum(_utf8(key) + 3 for key in body if key not in UNBILLED_FIELDS)
    pop, push = stack.pop, stack.append
    while stack:
        value = pop()
        cls = value.__class__
        if cls is str:
            total += _utf8(value) + 3  # quotes and a separator
        elif cls is dict:
            kind = value.get("type")
            skip: frozenset[str] | tuple[()] = ()
            if kind in IMAGE_PART_TYPES:  # the payload (URL or base64) counts as image_tokens
                total += image_tokens
                skip = _IMAGE_PAYLOAD
            if kind in FILE_PART_TYPES:
                raise Unbounded(
                    f"Content parts of type {kind!r} cannot be priced before they are sent, and this "
                    "router enforces a hard spending cap: send the document's text instead.",
                    "messages",
                )
            if "cache_control" in value:
                cache_writes = True
            total += 2
            for key, item in value.items():
                total += _utf8(key) + 3 if key.__class__ is str else 8
                if key not in skip:
                    push(item)
        elif cls is list:
            total += 2
            stack.extend(value)
        elif value is None or cls is bool:
            total += 6
        else:  # numbers
            total += len(repr(value)) + 1
    limits = [x for x in (_limit(body.get("max_tokens")), _limit(body.get("max_completion_tokens"))) if x]
    return Bound(total, max(limits) if limits else None, choices(body.get("n")), cache_writes)


class Limited(Protocol):
    @property
    def max_output(self) -> int | None: ...


def after_recovery(billed: Bound, candidates: Sequence[Limited], default_max_output: int) -> Bound:
    """What one mid-stream recovery (`recovery`) may bill on top of the first answer: the
    prompt again plus the text the client already had — at most one answer's output — as a
    prefill, and another answer (recovered streams have one choice)."""
    outputs = []
    for route in candidates:
        limits = [b for b in (billed.max_tokens, route.max_output) if b is not None and b > 0]
        outputs.append(min(limits) if limits else default_max_output)
    prefill = max(outputs, default=default_max_output)
    return Bound(billed.input_tokens + prefill, billed.max_tokens, 1, billed.cache_writes)


class Priced(Protocol):
    """What `estimate` needs from a candidate (`routing.engine.ModelRoute` fits)."""

    @property
    def price(self) -> Price: ...

    @property
    def max_output(self) -> int | None: ...
