"""Test double of `snapshot_restore_py`, the module Lambda's managed Python runtime provides
for SnapStart (never shipped in the artifact: tests/deploy/test_built_snapstart.py puts this
directory on sys.path after the artifact, where the runtime's own directory is).

Its documented API: `register_before_snapshot(func, *args, **kwargs)` and
`register_after_restore(func, *args, **kwargs)` record `(func, args, kwargs)` and return
`func` (usable as decorators); the runtime reads the records with `get_before_snapshot()` and
`get_after_restore()` and calls each `func(*args, **kwargs)` in order of registration.
"""

from collections.abc import Callable
from typing import Any

_before: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
_after: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []


def register_before_snapshot(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    _before.append((func, args, kwargs))
    return func


def register_after_restore(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    _after.append((func, args, kwargs))
    return func


def get_before_snapshot() -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
    return _before


def get_after_restore() -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
    return _after
