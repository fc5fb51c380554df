"""Bytecode of the methods `@dataclass` writes, compiled when the Lambda artifact is built.

`@dataclass` writes each class's `__init__`, `__repr__`, `__eq__`, ... as source text and
compiles it with `exec` when the class is created: on CPython 3.12, about 250 small compiles for
the classes the handler's init creates, ~35 ms of the router's own ~85 ms init in the artifact
(bench/RESULTS.md, "Issue 18 (2nd session): cold start") — work that is the same at every cold
start, as a module's own compile is (which is why the artifact ships .pyc files).

So handler/Makefile imports the handler module once at build time, under `recording()`, and
writes every text `dataclasses` compiled with its code object (`python -m
tier_router.dataclass_bytecode OUT`, marshal, tagged with the interpreter's bytecode magic
number). At init, `tier_router.asgi` builds the app under `precompiled()`: `dataclasses` gets
the stored code object for a text it has — what `exec` would compile from that text (same text,
same compiler, same "<string>" file name, no __future__ flags) — and compiles any other text as
before. A file written by another Python (its magic number), or no file (the source tree, tests,
`tier-router serve`), changes nothing. Either way, `dataclasses` is left as it was when the
`with` block ends.

How: `dataclasses` calls `exec` by name, so a module attribute `exec` shadows the builtin for
that module alone while the block runs.
"""

from __future__ import annotations

import builtins
import dataclasses
import marshal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from types import CodeType
from typing import Any

BYTECODE = Path(__file__).resolve().parent.parent / "dataclass-bytecode.marshal"
"""In the Lambda artifact (handler/Makefile): the stored code objects."""
INIT_MODULES = ("tier_router.lambda_entry", "tier_router.store.dynamodb", "tier_router.store.regional")
"""What the build imports: the handler (its app built from the environment, as at init: with
`tier_router.asgi`'s imports) and the stores a deployment's init may open besides the one the
build's app opens."""


def load(path: Path = BYTECODE) -> dict[str, CodeType]:
    """The stored code objects by source text; empty without the file, or when another Python
    (another bytecode magic number) wrote it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    if not data.startswith(MAGIC_NUMBER):
        return {}
    # Part of the artifact, trusted as its .pyc files are (and written the same way: marshal).
    codes: dict[str, CodeType] = marshal.loads(data[len(MAGIC_NUMBER) :])  # noqa: S302
    return codes


class Use:
    """What `precompiled()` did: how many code objects it had (`stored`; 0: nothing changed),
    and how many texts it did not have and compiled (`compiled`)."""

    __slots__ = ("compiled", "stored")

    def __init__(self, stored: int) -> None:
        self.stored = stored
        self.compiled = 0


@contextmanager
def precompiled(path: Path = BYTECODE) -> Iterator[Use]:
    """While the block runs, `dataclasses` uses the stored code object of a text it has.
    Nothing changes without stored code objects, or when `dataclasses.exec` is already shadowed
    (under `recording()`, as when the build imports the handler, or an outer `precompiled()`)."""
    codes = {} if "exec" in vars(dataclasses) else load(path)
    use = Use(len(codes))
    if not codes:
        yield use
        return

    def exec_stored(source: str | CodeType, globals: Any = None, locals: Any = None) -> None:
        code = codes.get(source) if isinstance(source, str) else source
        if code is None:
            use.compiled += 1
            code = _compile(source)
        builtins.exec(code, globals, locals)  # noqa: S102

    with _shadow_exec(exec_stored):
        yield use


@contextmanager
def recording() -> Iterator[dict[str, CodeType]]:
    """While the block runs, every text `dataclasses` compiles is kept with its code object."""
    codes: dict[str, CodeType] = {}

    def exec_recorded(source: str | CodeType, globals: Any = None, locals: Any = None) -> None:
        if isinstance(source, str):
            source = codes.setdefault(source, _compile(source))
        builtins.exec(source, globals, locals)  # noqa: S102

    with _shadow_exec(exec_recorded):
        yield codes


def _compile(source: str | CodeType) -> CodeType:
    """`source` compiled as `exec` compiles it when `dataclasses` calls it: without the
    __future__ flags of the calling code (this module's `annotations` would turn the generated
    methods' annotations into strings)."""
    if isinstance(source, CodeType):
        return source
    return compile(source, "<string>", "exec", dont_inherit=True)


@contextmanager
def _shadow_exec(function: Any) -> Iterator[None]:
    if "exec" in vars(dataclasses):  # someone else's: never stack silently
        raise RuntimeError("dataclasses.exec is already shadowed")
    dataclasses.exec = function  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del dataclasses.exec  # type: ignore[attr-defined]


def write(codes: dict[str, CodeType], out: Path) -> None:
    out.write_bytes(MAGIC_NUMBER + marshal.dumps(codes))


def main(argv: list[str]) -> int:
    """`python -m tier_router.dataclass_bytecode OUT [MODULE ...]`: import the modules (default:
    INIT_MODULES) and write the code of every dataclass method they created to OUT."""
    if not argv:
        print(main.__doc__, file=sys.stderr)
        return 2
    import importlib

    out, modules = Path(argv[0]), argv[1:] or list(INIT_MODULES)
    with recording() as codes:
        for name in modules:
            importlib.import_module(name)
    if not codes:
        print(f"no dataclass was created by importing {', '.join(modules)}", file=sys.stderr)
        return 1
    write(codes, out)
    print(f"{out}: {len(codes)} dataclass methods, {out.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
