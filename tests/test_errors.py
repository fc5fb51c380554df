"""Every exception class tier-router defines belongs to the one tree in `tier_router.errors`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import tier_router
from tier_router.errors import RouterError

SKIP = {"tier_router.lambda_entry", "tier_router.asgi"}  # build an app from the environment at import


def package_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(tier_router.__path__, "tier_router."):
        if info.name in SKIP:
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__.startswith("tier_router.")
            ):
                found[f"{value.__module__}.{name}"] = value
    return found


def test_every_exception_is_a_router_error() -> None:
    exceptions = package_exceptions()
    assert len(exceptions) >= 15  # the scan does find them
    outside = sorted(name for name, cls in exceptions.items() if not issubclass(cls, RouterError))
    assert outside == []


def test_the_documented_tree_names_every_branch() -> None:
    import tier_router.errors as errors

    branches = [
        cls.__name__ for cls in vars(errors).values() if inspect.isclass(cls) and issubclass(cls, RouterError)
    ]
    for name in branches:
        assert name in (errors.__doc__ or ""), f"{name} is missing from the tree in errors.py's docstring"
