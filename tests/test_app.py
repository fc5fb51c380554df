"""app.route_path matches paths exactly as Starlette's router does. It mirrors a private
Starlette helper; this test fails loudly if a Starlette upgrade changes (or drops) that helper."""

from __future__ import annotations

import pytest
from tier_router.app import route_path

CASES = [
    ("/v1/chat/completions", ""),
    ("/gateway/v1/chat/completions", "/gateway"),
    ("/gateway", "/gateway"),
    ("/gatewayx/v1/chat/completions", "/gateway"),
    ("/other/v1/chat/completions", "/gateway"),
    ("/chat/completions", "/"),
]


@pytest.mark.parametrize(("path", "root"), CASES)
def test_route_path_is_starlettes(path: str, root: str) -> None:
    from starlette._utils import get_route_path  # the private helper this mirrors

    scope = {"path": path, "root_path": root}
    assert route_path(scope) == get_route_path(scope)


def test_route_path_strips_only_a_whole_root_segment() -> None:
    assert (
        route_path({"path": "/gateway/v1/chat/completions", "root_path": "/gateway"})
        == "/v1/chat/completions"
    )
    assert route_path({"path": "/gatewayx/v1", "root_path": "/gateway"}) == "/gatewayx/v1"
