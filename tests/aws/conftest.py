"""Fixtures for the AWS client tests: the asyncio backend only (no server: the wire is an
httpx.MockTransport)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
