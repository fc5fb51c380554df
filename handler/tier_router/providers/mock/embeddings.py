"""What the mock answers on `POST mock://<name>/embeddings`: OpenAI's embeddings shape, one
deterministic unit vector per input.

Each vector is a function of the model id and the input (its text, or its token ids) only:
the same input always gets the same vector from the same model, and different inputs get
different (nearly orthogonal) ones. `dimensions` sets the length (default `DEFAULT_DIMENSIONS`,
at most `MAX_DIMENSIONS`); `encoding_format: base64` gives each vector as little-endian
float32 bytes in base64, as OpenAI does. Usage counts the input's tokens (`routing.tokens`'
estimate for text, one per token id); `latency_ms` and `fail_rate` apply as for chat.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import time
from typing import Any

from tier_router.errors import RequestError
from tier_router.routing.tokens import estimate_tokens

DEFAULT_DIMENSIONS = 256
MAX_DIMENSIONS = 4096


class BadRequest(RequestError):
    """The body is not an embeddings request the mock can answer (a 400 naming why)."""


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    model = str(body.get("model") or "mock")
    inputs = body.get("input")
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'input' must be a string, an array of strings or token ids, or an array of those")
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if type(dimensions) is not int or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise BadRequest(f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}")
    as_base64 = body.get("encoding_format") == "base64"
    data, tokens = [], 0
    for index, item in enumerate(inputs):
        if isinstance(item, str):
            seed, tokens = item.encode("utf-8", "surrogatepass"), tokens + estimate_tokens(item)
        elif isinstance(item, list):
            seed, tokens = repr(item).encode(), tokens + len(item)
        else:
            raise BadRequest(f"'input[{index}]' must be a string or an array of token ids")
        vector = unit_vector(f"{model}\0".encode() + seed, dimensions)
        encoded: Any = vector
        if as_base64:
            encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "created": int(time.time()),
    }


def unit_vector(seed: bytes, dimensions: int) -> list[float]:
    """`dimensions` numbers in [-1, 1) from blake2b of `seed` in counter mode, scaled to length 1."""
    raw = bytearray()
    counter = 0
    while len(raw) < 2 * dimensions:
        raw += hashlib.blake2b(seed + counter.to_bytes(4, "little"), digest_size=64).digest()
        counter += 1
    values = [(v - 32768) / 32768 for v in struct.unpack(f"<{dimensions}H", bytes(raw[: 2 * dimensions]))]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
