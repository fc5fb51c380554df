"""Router keys: who may call the router, and with which limits.

Clients send `Authorization: Bearer <router key>`. The router stores only SHA-256 hashes
of keys, each with a name (what logs, counters and budgets show), and optionally a daily
budget, rate limits and the tiers the key may use. `tier-router keys create NAME` makes a
key, prints it once, and stores its hash.

Where keys come from (first match):
- `TIER_ROUTER_KEYS_SSM`: an SSM SecureString holding the keys file (Lambda; read lazily
  on the first request, refreshed every few minutes);
- `TIER_ROUTER_KEYS_FILE`: a keys file on disk;
- `TIER_ROUTER_API_KEYS`: `name=secret,...` in plain text — for local development only.

Comparison is constant-time per stored hash and never stops at the first match.

A keys file is re-read when it changes (`KeysFileWatch`): its modification time, size and
inode are looked at, off the event loop, at most every `KEYS_FILE_CHECK_S` seconds, so a key
created, revoked or re-limited with `tier-router keys create` (or an edit) takes effect
without a restart. A file that no longer parses, or names a tier the rules do not define,
is not taken: the previous keys stay, with a warning.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tier_router.errors import ConfigError

log = logging.getLogger("tier_router")
KEY_PREFIX = "trk-"
KEYS_FILE_CHECK_S = 2.0
"""A keys file is looked at (stat) at most this often, for changes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """One router key: its name and hash, and its limits. A keys file's entries are checked by
    `keys_file.KeyEntry` (pydantic, same fields: tests/coldstart ties them) before they become
    records; `TIER_ROUTER_API_KEYS` entries are built here, so the request path never imports
    pydantic or YAML for keys given in the environment."""

    name: str
    sha256: str
    daily_usd: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    tiers: list[str] | None = None
    """tiers this key may use"""

    def as_dict(self) -> dict[str, Any]:
        """The record as a keys file writes it (unset limits left out)."""
        return {f: getattr(self, f) for f in self.__slots__ if getattr(self, f) is not None}


class KeysError(ConfigError):
    """The keys file is invalid; the message names the source and the problem, never a key."""


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_keys(text: str, source: str) -> list[KeyRecord]:
    """A keys file's records; raises KeysError naming the source and the problem.

    A keys file written as JSON whose every entry is plainly valid (exact types, every bound
    met, names unique) is read here directly; anything else — YAML, coercions, problems — by
    `keys_file` (YAML and pydantic, imported then), which accepts or refuses it with the
    reason. So the first request on Lambda, which reads the SSM keys parameter, imports
    neither for a JSON parameter (docs/coldstart.md); tests/coldstart holds both paths to
    the same records."""
    records = plain_json_keys(text)
    if records is not None:
        return records
    from tier_router.keys_file import parse_keys_file

    return parse_keys_file(text, source)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def plain_json_keys(text: str) -> list[KeyRecord] | None:
    """The records of a plainly valid JSON keys file (after any leading `#` comment lines, as
    `keys create` writes it); None for anything that needs the full check."""
    body = text.lstrip()
    while body.startswith("#"):
        body = body.partition("\n")[2].lstrip()
    try:
        raw = json.loads(body)
    except ValueError:
        return None
    if type(raw) is not dict or set(raw) - {"keys"} or type(raw.get("keys", [])) is not list:
        return None
    records = []
    for entry in raw.get("keys", []):
        if type(entry) is not dict or not plain_entry_fields(entry):
            return None
        usd = entry.get("daily_usd")
        records.append(KeyRecord(**{**entry, **({"daily_usd": float(usd)} if usd is not None else {})}))
    names = [r.name for r in records]
    return records if len(set(names)) == len(names) else None


def plain_entry_fields(entry: dict[str, Any]) -> bool:
    """An entry the keys file's model (`keys_file.KeyEntry`) would take exactly as it is."""
    name, sha, usd = entry.get("name"), entry.get("sha256"), entry.get("daily_usd")
    limits, tiers = [entry.get("rpm"), entry.get("tpm")], entry.get("tiers")
    return (
        set(entry) <= _FIELDS
        and type(name) is str
        and _NAME.fullmatch(name) is not None
        and type(sha) is str
        and _SHA256.fullmatch(sha) is not None
        and (usd is None or (type(usd) in (int, float) and 0 <= usd < math.inf))
        and all(n is None or (type(n) is int and n >= 0) for n in limits)
        and (tiers is None or (type(tiers) is list and bool(tiers) and all(type(t) is str for t in tiers)))
    )


_FIELDS = {"name", "sha256", "daily_usd", "rpm", "tpm", "tiers"}


def plain_entry(entry: str) -> tuple[str, str]:
    """One `TIER_ROUTER_API_KEYS` entry: `name=secret`, or a bare secret (named by its hash)."""
    name, sep, secret = entry.partition("=")
    if not (sep and name.strip() and secret.strip()):
        name, secret = f"k-{hash_key(entry)[:12]}", entry
    return name.strip(), secret.strip()


def plain_keys(entries: Iterable[str]) -> list[KeyRecord]:
    """`TIER_ROUTER_API_KEYS` entries as key records (hashes)."""
    records = []
    for entry in entries:
        name, secret = plain_entry(entry)
        records.append(KeyRecord(name=name, sha256=hash_key(secret)))
    return records


def plain_secrets(entries: Iterable[str]) -> list[str]:
    """The router keys themselves of `TIER_ROUTER_API_KEYS` entries (for the redactor)."""
    return [plain_entry(entry)[1] for entry in entries]


class KeyRing:
    """The current set of keys. `match` is what authentication calls per request."""

    def __init__(self, records: Iterable[KeyRecord] = ()) -> None:
        self.replace(records)

    def replace(self, records: Iterable[KeyRecord]) -> None:
        self.records = list(records)
        self._hashes = [(bytes.fromhex(r.sha256), r) for r in self.records]

    def __bool__(self) -> bool:
        return bool(self.records)

    def match(self, presented: str) -> KeyRecord | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: KeyRecord | None = None
        for stored, record in self._hashes:  # no early exit: time does not depend on which key
            if hmac.compare_digest(digest, stored):
                found = record
        return found


def unknown_tier_problem(records: Iterable[KeyRecord], tiers: Iterable[str]) -> str | None:
    """The first key limited to a tier that is not among `tiers`, named with the tier."""
    known = list(tiers)
    for record in records:
        unknown = [t for t in record.tiers or () if t not in known]
        if unknown:
            return (
                f"router key {record.name!r} allows unknown tier {', '.join(repr(t) for t in unknown)}"
                f" (known tiers: {', '.join(known)})"
            )
    return None


Stamp = tuple[int, int, int] | None


def file_stamp(path: Path) -> Stamp:
    """What changes when the file does: modification time, size, inode (None: cannot stat)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class KeysFileWatch:
    """Re-reads a keys file when it changed. `poll` is called per request and costs a clock
    read; at most every `every_s` it looks at the file in a worker thread (never blocking the
    event loop), and returns the new full key set (`base`, the plain keys, first) when the
    file changed and is valid; None otherwise."""

    def __init__(
        self,
        path: Path,
        *,
        base: Iterable[KeyRecord] = (),
        tiers: Iterable[str] = (),
        every_s: float = KEYS_FILE_CHECK_S,
    ) -> None:
        self.path = path
        self.base = list(base)
        self.tiers = list(tiers)
        self.every_s = every_s
        self.stamp = file_stamp(path)  # before the caller's first read: a change in between is seen
        self._checked_at = time.monotonic()

    async def poll(self) -> list[KeyRecord] | None:
        now = time.monotonic()
        if now - self._checked_at < self.every_s:
            return None
        self._checked_at = now
        return await asyncio.to_thread(self._reload)

    def _reload(self) -> list[KeyRecord] | None:
        stamp = file_stamp(self.path)
        if stamp == self.stamp:
            return None
        self.stamp = stamp
        try:
            records = parse_keys(self.path.read_text(encoding="utf-8"), str(self.path))
        except (OSError, KeysError) as exc:
            log.warning("router keys file not reloaded, the previous keys stay: %s", exc)
            return None
        problem = unknown_tier_problem(records, self.tiers) if self.tiers else None
        if problem:
            log.warning("router keys file not reloaded, the previous keys stay: %s: %s", self.path, problem)
            return None
        log.info("router keys reloaded from %s: %d keys", self.path, len(records))
        return [*self.base, *records]
