"""A time limit on JSON Schema checks: no answer, however it was made, holds a check for long.

A schema check's cost is not bounded by the sizes of the schema and the answer alone: a schema
with `anyOf` branches that each recurse through a `$ref` re-reads the answer's subtree once per
branch, level after level (measured: a 250-character schema and a 47-character answer, 55 s),
and a large enum or a many-branch `anyOf` applied to every item of a 1 MB array runs for
minutes. The generated code (`schemas.compile_schema`) is therefore compiled with `tick()` at
the start of every function and every loop iteration — all work the code can repeat — and
`tick` raises `OutOfTime` once the thread's deadline (`time_limit`) has passed. A check that
runs out of time lets the answer pass, like one that cannot finish (`schemas.STATS.unfinished`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from types import CodeType

from tier_router.errors import RouterError

TICK = "_tick"
"""The name `tick` has in the generated code's globals."""


class OutOfTime(RouterError):
    """A schema check ran past its time limit."""


_deadline = threading.local()


_now = time.perf_counter


def tick() -> None:
    if _now() > _deadline.at:
        raise OutOfTime


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Every schema check in this block, on this thread, together within `seconds` (an inner
    limit never extends an outer one)."""
    previous = getattr(_deadline, "at", None)
    at = time.perf_counter() + seconds
    _deadline.at = at if previous is None else min(previous, at)
    try:
        yield
    finally:
        if previous is None:
            del _deadline.at
        else:
            _deadline.at = previous


def limited() -> bool:
    """Whether a time limit is in force on this thread."""
    return hasattr(_deadline, "at")


LOOPS = ("def ", "for ", "while ")


def with_ticks(source: str) -> CodeType:
    """fastjsonschema's generated `source` compiled with a call to `_tick()` opening every
    function and loop body. The generated code is regular — one statement a line, blocks
    indented by 4 spaces, schema values as one-line literals — so a block opener is a line that
    starts with one of LOOPS and ends with a colon (an AST rewrite costs ~3× the compile)."""
    lines: list[str] = []
    for line in source.splitlines():
        lines.append(line)
        code = line.lstrip(" ")
        if code.startswith(LOOPS) and code.endswith(":"):
            lines.append(" " * (len(line) - len(code) + 4) + TICK + "()")
    return compile("\n".join(lines), "<json schema>", "exec")
