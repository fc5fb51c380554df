"""Shared by the lifecycle modules: one scripted fake provider and (only when a DynamoDB case
runs) one moto server process for the whole session. Routers are per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.moto_process import MotoProcess, moto_process
from tests.support.stack import Upstream, scripted_upstream


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    with scripted_upstream() as fake:
        yield fake


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoProcess]:
    with moto_process() as server:
        yield server
