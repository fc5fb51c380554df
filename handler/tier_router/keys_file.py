"""A router keys file (YAML or JSON: a local file, or the SSM parameter on Lambda), checked by
pydantic: `KeyEntry` is `router_keys.KeyRecord`'s validation model (same fields; tests/coldstart
ties them). Imported only where a keys file is read or written, never for keys given in the
environment (`TIER_ROUTER_API_KEYS`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tier_router.router_keys import KeyRecord, KeysError


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    daily_usd: float | None = Field(default=None, ge=0)
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    tiers: list[str] | None = Field(default=None, min_length=1, description="tiers this key may use")

    def record(self) -> KeyRecord:
        return KeyRecord(**{name: getattr(self, name) for name in type(self).model_fields})


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry] = Field(default_factory=list)


def validated_record(**fields: Any) -> KeyRecord:
    """A record checked as a keys file's entry is; raises pydantic's ValidationError."""
    return KeyEntry(**fields).record()


def parse_keys_file(text: str, source: str) -> list[KeyRecord]:
    try:
        raw = yaml.safe_load(text) or {}
        records = [entry.record() for entry in KeysFile.model_validate(raw).keys]
    except yaml.YAMLError as exc:
        raise KeysError(f"{source}: invalid YAML/JSON ({exc.__class__.__name__})") from None
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise KeysError(f"{source}: {where}: {first['msg']}") from None
    names = [r.name for r in records]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise KeysError(f"{source}: duplicate key names: {', '.join(duplicates)}")
    return records


def append_key(path: Path, record: KeyRecord) -> None:
    """Add a key to a keys file (created if absent); names stay unique."""
    existing = parse_keys_file(path.read_text(encoding="utf-8"), str(path)) if path.exists() else []
    if any(r.name == record.name for r in existing):
        raise KeysError(f"{path}: a key named {record.name!r} already exists")
    data: dict[str, Any] = {"keys": [r.as_dict() for r in [*existing, record]]}
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON (which is also YAML, so the file may be edited as either): a Lambda reading it from
    # SSM parses it without importing YAML or pydantic (`router_keys.plain_json_keys`).
    path.write_text(
        "# Router keys: SHA-256 hashes only. Create with `tier-router keys create NAME`.\n"
        + json.dumps(data, indent=2)
        + "\n",
        encoding="utf-8",
    )
