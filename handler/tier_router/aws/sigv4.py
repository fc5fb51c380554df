"""AWS Signature Version 4 for header-signed requests, with hashlib/hmac only.

Why our own: botocore's signer drags in botocore (≈200 ms of Lambda cold start with a
client). The algorithm is small and fixed:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
It is tested header-for-header against botocore's `SigV4Auth` (tests/test_sigv4.py).

Scope: requests whose body is in memory (the payload hash is always computed) and whose
URL query, if any, is already percent-encoded. Every header passed in is signed, so pass
only headers the HTTP client will send unchanged (not `user-agent`, `connection`, ...).

Used by `tier_router.aws.client` for every AWS call (DynamoDB, SSM). Where credentials
come from is not this module's business: `settings.environment_credentials` reads them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_OURS = frozenset({"authorization", "x-amz-date", "x-amz-security-token"})


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:  # never print the secret or the token
        token = "'***'" if self.token else "None"
        return f"Credentials(access_key={self.access_key!r}, secret_key='***', token={token})"

    def redact(self, text: str) -> str:
        """Remove secrets from text we are about to put in an error or a log line."""
        for secret in (self.secret_key, self.token):
            if secret:
                text = text.replace(secret, "***")
        return text


def host_from_url(url: str) -> str:
    """The Host header value: lowercase host, default port dropped (as HTTP clients send)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def sign(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """Return the headers to add to the request: Host, X-Amz-Date, [X-Amz-Security-Token], Authorization."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]

    added: dict[str, str] = {}
    if not any(name.lower() == "host" for name in headers):
        added["Host"] = host_from_url(url)
    added["X-Amz-Date"] = amz_date
    if credentials.token:
        added["X-Amz-Security-Token"] = credentials.token

    signed: dict[str, list[str]] = {}
    # A caller's Authorization/X-Amz-Date/token (say, from an earlier attempt) are replaced.
    theirs = [(name, value) for name, value in headers.items() if name.lower() not in _OURS]
    for name, value in [*theirs, *added.items()]:
        signed.setdefault(name.lower(), []).append(" ".join(str(value).split()))
    names = sorted(signed)
    signed_headers = ";".join(names)
    canonical_headers = "".join(f"{n}:{','.join(signed[n])}\n" for n in names)

    parts = urlsplit(url)
    canonical_request = "\n".join(
        [
            method.upper(),
            quote(_remove_dot_segments(parts.path), safe="/~"),
            _canonical_query(parts.query),
            canonical_headers,
            signed_headers,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _signing_key(credentials.secret_key, date, region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return added


@functools.lru_cache(maxsize=16)
def _signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The derived key changes once a day per region/service: derive it once."""
    key = hmac.new(f"AWS4{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, plus collapsing `//`, as AWS (non-S3) canonicalises paths."""
    if not path:
        return "/"
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment and segment != ".":
            out.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def _canonical_query(query: str) -> str:
    """Sort the already-encoded `name=value` pairs by name, then value."""
    if not query:
        return ""
    pairs = sorted((k, v) for k, _, v in (pair.partition("=") for pair in query.split("&")))
    return "&".join(f"{k}={v}" for k, v in pairs)
