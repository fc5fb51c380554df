"""Sticky ids: what places a request, stably, in a weighted split, a rollout or an experiment arm.

A request's sticky id comes from the first present source of `routing.sticky` ("header:<name>",
"user", "metadata:<key>", "key": the router key's name). It is hashed at once — blake2b, 16
bytes — and only that digest is kept (`Sticky.digest`): the raw id is never stored, returned,
logged or shown (explain shows which source gave it, never its value). No source present: the
digest is 16 random bytes, so the request is placed at random and not sticky (`source` "none").

Each purpose hashes the digest again under its own salt into a bucket 0..9999 (`Salt.bucket`):
"split" + the tier's name, "rollout" + the rule's name, "experiment" + the experiment's name.
The same id thus gets independent buckets for different purposes (a split and an experiment
do not line up), and the same bucket for one purpose on every request (sticky). The salts are
hashed once, at load; a request pays one blake2b of its id, then one per purpose it reaches.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from enum import Enum
from hashlib import blake2b
from typing import NamedTuple

from tier_router.routing.features import Features
from tier_router.schema.units import BUCKETS

NO_STICKY = "none"
"""`Sticky.source` when no source was present: the request was placed at random."""
UNUSED = "unused"
"""`Sticky.source` when the rules file places nothing by sticky id (no weighted tier, no
rollout, no experiment): the id is not even read."""


class Sticky(NamedTuple):  # a NamedTuple: built on every request, ~2x cheaper than a dataclass
    source: str
    """Which source gave the id: "header:<name>", "user", "metadata:<key>", "key", "none" or
    "unused"."""
    digest: bytes
    """blake2b-128 of the id (never the id itself); random bytes when `source` is "none"."""

    def __repr__(self) -> str:
        return f"Sticky(source={self.source!r})"


NOT_READ = Sticky(UNUSED, b"")


class Kind(Enum):
    HEADER = "header"
    USER = "user"
    METADATA = "metadata"
    KEY = "key"


HEADER, USER, METADATA = Kind.HEADER, Kind.USER, Kind.METADATA


class StickySources:
    """`routing.sticky`, read in order; parsed once at load."""

    __slots__ = ("sources",)

    def __init__(self, sources: list[str]) -> None:
        parsed: list[tuple[str, Kind, str]] = []
        for source in sources:
            kind, _, name = source.partition(":")
            parsed.append((source, Kind(kind), name))
        self.sources = tuple(parsed)

    def read(self, features: Features, key: str | None) -> Sticky:
        """The first present source's id, hashed; or random bytes (source "none")."""
        value: object
        for label, kind, name in self.sources:
            if kind is HEADER:
                value = features.headers.get(name)
            elif kind is USER:
                value = features.user
            elif kind is METADATA:
                value = metadata_value(features.metadata, name)
            else:
                value = key
            if value and isinstance(value, str):
                return Sticky(label, blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).digest())
        # Not sticky, and nothing to keep secret: a fast PRNG is enough to place the request.
        return Sticky(NO_STICKY, random.getrandbits(128).to_bytes(16, "big"))


def metadata_value(metadata: Mapping[str, object], key: str) -> object:
    return metadata.get(key) if isinstance(metadata, Mapping) else None


class Salt:
    """One purpose's salt ("split", "rollout", "experiment" + a name), hashed once at load."""

    __slots__ = ("_base", "label")

    def __init__(self, purpose: str, name: str) -> None:
        self.label = f"{purpose}:{name}"
        self._base = blake2b(f"{purpose}\0{name}\0".encode(), digest_size=8)

    def bucket(self, digest: bytes) -> int:
        """0..BUCKETS-1 for this purpose, the same for the same digest."""
        h = self._base.copy()
        h.update(digest)
        return int.from_bytes(h.digest(), "big") % BUCKETS

    def __repr__(self) -> str:
        return f"Salt({self.label!r})"
