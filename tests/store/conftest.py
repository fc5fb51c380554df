"""The store tests run with fake AWS credentials only (the child processes of the integrity
tests inherit them). `store`, `moto`, `table` and `clock` are the root conftest's."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fake_aws(aws_env: dict[str, str]) -> dict[str, str]:
    return aws_env
