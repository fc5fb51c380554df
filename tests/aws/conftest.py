"""Fixtures for the AWS client tests: fake AWS credentials only (never the host's), and a
fresh SSM parameter path per test on the root conftest's `moto` server."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(autouse=True)
def _fake_aws(aws_env: dict[str, str]) -> dict[str, str]:
    return aws_env


@pytest.fixture
def prefix() -> str:
    """A fresh parameter path per test (the moto server is shared by the session)."""
    return f"/tier-router-test/{uuid.uuid4().hex[:10]}/"
