"""Fixtures for testing the BUILT Lambda artifact (what `sam build` ships), not the source tree.

`.ci/sam.sh` builds `.aws-sam/build/RouterFunction` (arm64, the deployable) and, on other
hosts, the same recipe for the host's architecture in `.aws-sam/build-<arch>/RouterFunction`.
Tests use the first of those whose native extensions this machine can load (or
`$TIER_ROUTER_ARTIFACT`). They skip only when no such artifact was built — and under CI
(`CI` set) that is a failure instead: CI runs .ci/sam.sh before pytest, so it never skips.

The handler runs in a fresh `python3.12 -I -S -B` process (tests/deploy/artifact_child.py)
whose sys.path is the artifact and the standard library only, as on Lambda.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_providers import FakeProviders
from tests.support.moto_server import FAKE_ENV

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("artifact_child.py")
EVENTS = ROOT / "tests" / "lambda_events"
ELF_MACHINES = {183: "aarch64", 62: "x86_64"}
HOST_MACHINE = {"arm64": "aarch64", "amd64": "x86_64"}.get(platform.machine().lower(), platform.machine())
HOST_ARCH = {"aarch64": "arm64"}.get(HOST_MACHINE, HOST_MACHINE)
CHILD_TIMEOUT_S = 60


def artifact_machines(artifact: Path) -> set[str]:
    """The CPU architectures of the artifact's native extensions (ELF e_machine)."""
    machines = set()
    for path in artifact.rglob("*.so"):
        with path.open("rb") as f:
            head = f.read(20)
        machines.add(ELF_MACHINES.get(int.from_bytes(head[18:20], "little"), "unknown"))
    return machines


def candidate_artifacts() -> list[Path]:
    configured = os.environ.get("TIER_ROUTER_ARTIFACT")
    if configured:
        return [Path(configured)]
    build = ROOT / ".aws-sam"
    return [build / "build" / "RouterFunction", build / f"build-{HOST_ARCH}" / "RouterFunction"]


def not_built(reason: str) -> None:
    message = f"{reason}; build it with `bash .ci/sam.sh`"
    if os.environ.get("CI"):
        pytest.fail(f"CI must test the built Lambda artifact: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def built_artifacts() -> list[Path]:
    """Every artifact built, whatever its architecture (for checks that do not run it)."""
    built = [p for p in candidate_artifacts() if (p / "tier_router" / "lambda_entry.py").is_file()]
    if not built:
        not_built("the Lambda artifact was not built (no .aws-sam/build*/RouterFunction)")
    return built


@pytest.fixture(scope="session")
def artifact(built_artifacts: list[Path]) -> Path:
    """The artifact this host can run."""
    built = built_artifacts
    for path in built:
        if artifact_machines(path) == {HOST_MACHINE}:
            return path.resolve()
    found = ", ".join(f"{p} ({'/'.join(sorted(artifact_machines(p)))})" for p in built)
    not_built(f"no artifact built for this host's {HOST_MACHINE} was found, only {found}")
    raise AssertionError("unreachable")


def find_python312() -> str | None:
    candidates = [os.environ.get("TIER_ROUTER_PY312"), shutil.which("python3.12")]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.12*", "bin", "python3.12")))[::-1]
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run(
                [candidate, "-I", "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError:
            continue
        if out.stdout.strip() == "True":
            return candidate
    return None


@pytest.fixture(scope="session")
def python312(artifact: Path) -> str:
    found = find_python312()
    if found is None:  # the artifact exists, so python3.12 built it: this is a broken setup
        pytest.fail("python3.12 (the Lambda runtime's version) not found; set TIER_ROUTER_PY312")
    return found


def load_event(name: str, authorization: str | None = None) -> dict[str, Any]:
    event = json.loads((EVENTS / name).read_text())
    if authorization is not None:
        event["headers"]["authorization"] = authorization
    return event


def base_env() -> dict[str, str]:
    """What a Lambda process would have, minus anything real: no inherited environment."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "AWS_LAMBDA_FUNCTION_NAME": "tier-router-test",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        **FAKE_ENV,
        "AWS_DEFAULT_REGION": FAKE_ENV["AWS_REGION"],
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture
def run_artifact(artifact: Path, python312: str, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Invoke the built handler with `events` in a fresh process; returns artifact_child's report."""

    def run(
        env: dict[str, str], events: list[dict[str, Any]], *, handler: str | None = None
    ) -> dict[str, Any]:
        job, result = tmp_path / f"job-{uuid.uuid4().hex}.json", tmp_path / f"result-{uuid.uuid4().hex}.json"
        job.write_text(json.dumps({"events": events, **({"handler": handler} if handler else {})}))
        proc = subprocess.run(
            [python312, "-I", "-S", "-B", str(CHILD), str(artifact), str(job), str(result)],
            env=env,
            cwd=artifact,  # Lambda's working directory is the code root, /var/task
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        assert proc.returncode == 0, f"handler process failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        report = json.loads(result.read_text())
        report["stdout"], report["stderr"] = proc.stdout, proc.stderr
        return report

    return run


@pytest.fixture
def fake_openai(fakes: FakeProviders) -> str:
    """The URL of an OpenAI-compatible fake provider (the root conftest's `fakes.a`, reset)."""
    return fakes.a.url


def rules_for(upstream_url: str) -> dict[str, Any]:
    """A production-shaped rules file whose only provider is the fake OpenAI upstream, with
    rate limits and a budget on, so a request writes the store the way production does."""
    return {
        "version": 1,
        "providers": {
            "fake-openai": {
                "kind": "openai",
                "base_url": upstream_url + "/v1",
                "api_key_env": "FAKE_OPENAI_KEY",
                "timeouts": {"connect": 2, "read": 10, "total": 20, "first_token": 10, "stall": 10},
            }
        },
        "models": {
            "fake-mini": {
                "provider": "fake-openai",
                "id": "gpt-fake-mini",
                "price": {"input": 0.4, "output": 1.6},
            },
            "fake-large": {
                "provider": "fake-openai",
                "id": "gpt-fake-large",
                "price": {"input": 3, "output": 15},
            },
        },
        "tiers": {"budget": ["fake-mini"], "premium": ["fake-large", "fake-mini"]},
        "default_tier": "budget",
        "rules": [
            {
                "name": "hard-question",
                "tier": "premium",
                "when": {"last_user_matches": {"pattern": r"\b(why|prove)\b", "ignore_case": True}},
            }
        ],
        "limits": {"requests_per_minute": 1000, "tokens_per_minute": 10_000_000},
        "budgets": {"daily_usd": 100},
    }


@pytest.fixture
def rules_file(tmp_path: Path, fake_openai: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(json.dumps(rules_for(fake_openai), indent=2))  # JSON is YAML
    return path
