"""The dataclass methods' bytecode (handler/Makefile `dataclass-bytecode`,
`tier_router.dataclass_bytecode`): a class built from the stored code behaves as one built the
usual way, a file from another Python changes nothing, `dataclasses` is left as it was, and the
handler's init, with the file the build writes, compiles no dataclass method at all.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tier_router import dataclass_bytecode
from tier_router.dataclass_bytecode import precompiled, recording, write
from tier_router.routing.compiled import compile_file

from tests.deploy.conftest import base_env, rules_for

ROOT = Path(__file__).resolve().parents[2]

CLASSES = """
from __future__ import annotations
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, order=True)
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


@dataclass
class Box:
    name: str
    items: list[int] = field(default_factory=list)
    size: int = field(default=3, repr=False)

    def __post_init__(self) -> None:
        self.size = max(self.size, len(self.items))


@dataclass(kw_only=True, eq=False)
class Options:
    fast: bool = False
    label: str | None = None
"""


def module_from(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses reads the module of a string annotation
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@pytest.fixture
def classes(tmp_path: Path) -> Path:
    path = tmp_path / "classes.py"
    path.write_text(CLASSES)
    return path


def behaviour(module: ModuleType) -> list[Any]:
    """What the generated methods do: init (defaults, factories, post-init, kw-only), repr,
    eq, order, hash, frozen."""
    p, q = module.Point(1), module.Point(1, 2, ("a",))
    box = module.Box("b", [1, 2, 3, 4])
    seen: list[Any] = [repr(p), repr(q), p == module.Point(1, 0), p < q, hash(p) == hash(module.Point(1))]
    seen += [repr(box), box.size, box == module.Box("b", [1, 2, 3, 4]), module.Box("c").items]
    opts = module.Options(fast=True)
    seen += [repr(opts), opts == module.Options(fast=True)]
    for cls in (module.Point, module.Box, module.Options):  # what introspection sees
        seen += [cls.__init__.__annotations__, str(inspect.signature(cls)), cls.__init__.__qualname__]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5
    with pytest.raises(TypeError):
        module.Options(True)
    return seen


def test_a_class_built_from_stored_code_behaves_as_one_compiled_at_creation(
    classes: Path, tmp_path: Path
) -> None:
    with recording() as codes:
        recorded = module_from(classes, "recorded_classes")
    assert len(codes) >= 8
    stored = tmp_path / "dataclass-bytecode.marshal"
    write(codes, stored)
    with precompiled(stored) as use:
        precompiled_module = module_from(classes, "precompiled_classes")
    plain = module_from(classes, "plain_classes")
    assert (use.stored, use.compiled) == (len(codes), 0)
    assert behaviour(precompiled_module) == behaviour(plain) == behaviour(recorded)


def test_a_text_not_stored_is_compiled_as_usual(classes: Path, tmp_path: Path) -> None:
    with recording() as codes:
        module_from(classes, "some_classes")
    point_texts = [t for t in codes if "def __init__(self,x" in t]
    assert point_texts
    for text in point_texts:
        del codes[text]
    stored = tmp_path / "partial.marshal"
    write(codes, stored)
    with precompiled(stored) as use:
        module = module_from(classes, "partly_precompiled_classes")
    assert use.compiled == len(point_texts)
    assert behaviour(module) == behaviour(module_from(classes, "plain_again"))


def test_a_file_from_another_python_or_no_file_changes_nothing(classes: Path, tmp_path: Path) -> None:
    with recording() as codes:
        module_from(classes, "recorded_again")
    other = tmp_path / "other.marshal"
    write(codes, other)
    other.write_bytes(b"\x00\x00\r\n" + other.read_bytes()[4:])  # another bytecode magic number
    for path in (other, tmp_path / "missing.marshal"):
        with precompiled(path) as use:
            assert "exec" not in vars(dataclasses)
            module = module_from(classes, f"unchanged_{path.stem}")
        assert use.stored == 0
        assert behaviour(module) == behaviour(module_from(classes, f"plain_{path.stem}"))


def test_dataclasses_is_left_as_it_was_even_when_the_block_fails(classes: Path, tmp_path: Path) -> None:
    with recording() as codes:
        module_from(classes, "recorded_once_more")
    stored = tmp_path / "stored.marshal"
    write(codes, stored)
    shadowed = []

    def fails() -> None:
        with precompiled(stored):
            shadowed.append("exec" in vars(dataclasses))
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fails()
    assert shadowed == [True]
    assert "exec" not in vars(dataclasses)
    with recording(), precompiled(stored) as use:  # the build's import of the handler: no-op
        assert use.stored == 0
    assert "exec" not in vars(dataclasses)
    assert dataclasses.dataclass(type("Late", (), {"__annotations__": {"a": int}}))(1).a == 1


CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tier_router.dataclass_bytecode import precompiled
with precompiled(Path(sys.argv[2])) as use:
    import tier_router.lambda_entry
print(json.dumps({"stored": use.stored, "compiled": use.compiled}))
"""


def test_the_handlers_init_compiles_no_dataclass_method_with_the_bytecode_the_build_writes(
    tmp_path: Path,
) -> None:
    """As handler/Makefile does: the handler imported once by `python -m
    tier_router.dataclass_bytecode OUT`, then a fresh init with OUT."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps(rules_for("http://127.0.0.1:9")))
    compile_file(rules)
    env = {
        **base_env(),
        "TIER_ROUTER_RULES": str(rules),
        "TIER_ROUTER_STORE": "memory://",
        "TIER_ROUTER_API_KEYS": "team=rk-dataclass-bytecode-0123456789",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    out = tmp_path / "dataclass-bytecode.marshal"
    build = subprocess.run(
        [sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
         "from tier_router.dataclass_bytecode import main; sys.exit(main(sys.argv[2:]))",
         str(ROOT / "handler"), str(out)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    assert f"{out}: " in build.stdout
    init = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, str(ROOT / "handler"), str(out)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr[-3000:]
    use = json.loads(init.stdout.strip().splitlines()[-1])
    assert use["stored"] >= 200
    assert use["compiled"] == 0


def test_the_artifacts_file_is_where_the_makefile_writes_it() -> None:
    makefile = (ROOT / "handler" / "Makefile").read_text()
    assert f'"$(ARTIFACTS_DIR)/{dataclass_bytecode.BYTECODE.name}"' in makefile
    assert dataclass_bytecode.BYTECODE.parent == ROOT / "handler"  # the artifact's root there
