"""Provider API keys: where they come from, and making sure they never leak.

Rules files name the environment variable (or secret) that holds each key, never the key.
Locally keys come from the environment that `Settings.environ` holds (this module reads no
environment itself); on Lambda from SSM (`aws.ssm.SSMKeySource`). `redact` scrubs every
known key — and anything shaped like a provider key — from text that may reach a log line
or a client.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

KEY_SHAPES = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|AIza[0-9A-Za-z_\-]{20,}|gsk_[A-Za-z0-9]{10,})")


class KeySource:
    """Looks keys up by name in a mapping (the environment, from `Settings.environ`, or a
    test's dict). The Lambda one, `aws.ssm.SSMKeySource`, fetches secrets lazily.

    `known` is every key value the source holds now; `on_change` (set by the gateway) is
    called whenever that set may have changed, so the redactor learns a key before any
    request can use it."""

    on_change: Callable[[], None] | None = None

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    async def get(self, name: str) -> str | None:
        return self._environ.get(name) or None

    def missing(self, names: Iterable[str]) -> list[str]:
        return sorted(name for name in set(names) if not self._environ.get(name))

    def known(self, names: Iterable[str]) -> list[str]:
        return [value for name in names if (value := self._environ.get(name))]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    return KEY_SHAPES.sub("[redacted]", text)
