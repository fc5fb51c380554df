"""The BUILT Lambda artifact serves real events: only its own files and the standard library
on sys.path (as on Lambda), rules from a file, state in DynamoDB (moto on 127.0.0.1), the
provider a fake OpenAI upstream on 127.0.0.1. See conftest.py for how the artifact is found.

Also checks what `sam build` must put in the artifact (rules/, run.sh, exactly the pinned
dependencies) and that uvicorn from the artifact serves the LWA mode's SSE stream.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.conftest import ROOT, base_env, load_event
from tests.support.loopback import free_port
from tests.support.moto_server import MotoServer

pytestmark = pytest.mark.integration

ROUTER_KEY = "rk-deploy-test-0123456789"
KEY_NAME = "deploy-test"


def headers_of(result: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in result["headers"].items()}


def body_of(result: dict[str, Any]) -> str:
    body = result.get("body") or ""
    return base64.b64decode(body).decode() if result.get("isBase64Encoded") else body


def sse_events(text: str) -> list[str]:
    return [block.removeprefix("data: ") for block in text.split("\n\n") if block.strip()]


def scan(moto: MotoServer, table: str) -> dict[str, dict[str, Any]]:
    items = moto.botocore("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]

    def plain(value: dict[str, Any]) -> Any:
        (kind, raw), *_ = value.items()
        return int(raw) if kind == "N" and raw.lstrip("-").isdigit() else raw

    return {item["pk"]["S"]: {k: plain(v) for k, v in item.items()} for item in items}


def test_function_url_and_http_api_events_on_dynamodb(
    run_artifact: Any, rules_file: Path, moto: MotoServer, table: str
) -> None:
    env = {
        **base_env(),
        "TIER_ROUTER_RULES": str(rules_file),
        "TIER_ROUTER_STORE": f"dynamodb://{table}?endpoint={moto.endpoint}",
        "TIER_ROUTER_API_KEYS": f"{KEY_NAME}={ROUTER_KEY}",
        "FAKE_OPENAI_KEY": "sk-fake-upstream-key-123456",
    }
    bearer = f"Bearer {ROUTER_KEY}"
    events = [
        load_event("function_url_chat_base64.json", bearer),
        load_event("http_api_v2_chat_stream.json", bearer),
        load_event("function_url_models.json", "Bearer not-a-router-key"),
    ]
    report = run_artifact(env, events)

    # Nothing came from outside the artifact and the standard library (boto3 included).
    assert report["sys_path"][0] == str(Path(report["sys_path"][0]).resolve())
    assert report["modules"]["elsewhere"] == [f"__main__ ({Path(__file__).with_name('artifact_child.py')})"]
    imported = {m.split(".")[0] for m in report["modules"]["artifact"]}
    assert not imported & {"boto3", "botocore"}
    # uvicorn (LWA mode) lives in lwa/, off the buffered handler's path: `import httpx` would
    # otherwise import click for httpx's CLI, on every cold start.
    assert not imported & {"uvicorn", "click"}

    chat, stream, unauthorized = (invoke["result"] for invoke in report["invokes"])

    # Function URL event, JSON completion: routed by the rule, served by the fake, priced.
    assert chat["statusCode"] == 200, body_of(chat)
    headers = headers_of(chat)
    assert headers["x-router-rule"] == "hard-question"
    assert headers["x-router-tier"] == "premium"
    assert headers["x-router-model"] == "fake-large"
    assert headers["x-router-provider"] == "fake-openai"
    assert headers["x-router-attempts"] == "1"
    assert float(headers["x-router-cost-usd"]) > 0
    completion = json.loads(body_of(chat))
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "gpt-fake-large"
    assert completion["choices"][0]["message"]["content"]

    # HTTP API v2 event, stream: a complete SSE body (buffered by Mangum), usage included.
    assert stream["statusCode"] == 200, body_of(stream)
    headers = headers_of(stream)
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-router-rule"] == "default"
    assert headers["x-router-model"] == "fake-mini"
    events_out = sse_events(body_of(stream))
    assert events_out[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events_out[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0

    # A wrong router key is refused.
    assert unauthorized["statusCode"] == 401
    assert json.loads(body_of(unauthorized))["error"]["code"] == "invalid_api_key"

    # Spend and rate-limit state landed in DynamoDB (moto's table), under the key's name.
    items = scan(moto, table)
    # The day's item, and the pin of the day's shard layout its first writer put beside it.
    layout = [item for pk, item in items.items() if pk.startswith("spend:") and pk.endswith("#layout")]
    assert [item["shards"] for item in layout] == [1], sorted(items)
    spend = [item for pk, item in items.items() if pk.startswith("spend:") and not pk.endswith("#layout")]
    assert len(spend) == 1, sorted(items)
    assert spend[0]["requests"] == 2
    assert spend[0]["total"] > 0
    assert spend[0][f"key.{KEY_NAME}"] == spend[0]["total"]
    assert spend[0]["model.fake-large"] > 0
    assert spend[0]["model.fake-mini"] > 0
    assert any(pk.startswith(f"rl:{KEY_NAME}:") for pk in items), sorted(items)
    assert ROUTER_KEY not in json.dumps(items)


def test_memory_store_and_one_line_per_request_log(run_artifact: Any, rules_file: Path) -> None:
    env = {
        **base_env(),
        "TIER_ROUTER_RULES": str(rules_file),
        "TIER_ROUTER_STORE": "memory://",
        "TIER_ROUTER_API_KEYS": f"{KEY_NAME}={ROUTER_KEY}",
        "FAKE_OPENAI_KEY": "sk-fake-upstream-key-123456",
    }
    report = run_artifact(env, [load_event("function_url_chat_base64.json", f"Bearer {ROUTER_KEY}")])
    assert report["invokes"][0]["result"]["statusCode"] == 200
    lines = [json.loads(line) for line in report["stdout"].splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) == 1
    assert requests[0]["outcome"] == "ok"
    assert requests[0]["key"] == KEY_NAME
    assert ROUTER_KEY not in report["stdout"] + report["stderr"]


def test_packaged_rules_are_the_default_on_lambda(run_artifact: Any) -> None:
    """TIER_ROUTER_RULES=rules/router.yaml (the template's default) resolves inside the artifact
    (the process runs in the code root, as Lambda does): the shipped rules load and route."""
    env = {
        **base_env(),
        "TIER_ROUTER_RULES": "rules/router.yaml",
        "TIER_ROUTER_STORE": "memory://",
        "TIER_ROUTER_API_KEYS": f"{KEY_NAME}={ROUTER_KEY}",
    }
    report = run_artifact(env, [load_event("function_url_models.json", f"Bearer {ROUTER_KEY}")])
    result = report["invokes"][0]["result"]
    assert result["statusCode"] == 200
    ids = [m["id"] for m in json.loads(body_of(result))["data"]]
    assert ids[:4] == ["auto", "budget", "standard", "premium"]


def test_no_router_keys_on_lambda_fails_closed(run_artifact: Any, rules_file: Path) -> None:
    env = {
        **base_env(),
        "TIER_ROUTER_RULES": str(rules_file),
        "TIER_ROUTER_STORE": "memory://",
        "FAKE_OPENAI_KEY": "sk-fake-upstream-key-123456",
    }
    report = run_artifact(env, [load_event("function_url_chat_base64.json")])
    result = report["invokes"][0]["result"]
    assert result["statusCode"] == 401
    assert json.loads(body_of(result))["error"]["code"] == "no_keys_configured"


# -- what the artifact contains -----------------------------------------------------------------


def pinned_requirements(name: str = "requirements.txt") -> dict[str, str]:
    pins = {}
    for line in (ROOT / "handler" / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt must pin exact versions: {line!r}"
            pins[normalize(name)] = version.strip()
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_requirements_cover_pyproject_dependencies() -> None:
    """handler/requirements.txt (the artifact) must not drift from pyproject.toml (dev/tests)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalize(re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}
    assert declared <= set(pinned_requirements()), declared - set(pinned_requirements())


def test_makefile_builds_for_the_template_architecture() -> None:
    template = (ROOT / "template.yaml").read_text()
    makefile = (ROOT / "handler" / "Makefile").read_text()
    arch = re.search(r"^\s+Architectures: \[(\w+)\]", template, re.MULTILINE)
    default = re.search(r"^LAMBDA_ARCH \?= (\w+)", makefile, re.MULTILINE)
    assert arch
    assert default
    assert arch.group(1) == default.group(1)


def installed_in(directory: Path) -> dict[str, str]:
    installed = {}
    for dist in directory.glob("*.dist-info"):
        name, _, version = dist.name.removesuffix(".dist-info").rpartition("-")
        installed[normalize(name)] = version
    return installed


def test_artifacts_hold_exactly_the_pinned_dependencies(built_artifacts: list[Path]) -> None:
    for artifact in built_artifacts:
        assert installed_in(artifact) == pinned_requirements(), artifact
        assert installed_in(artifact / "lwa") == pinned_requirements("requirements-lwa.txt"), artifact


def pem_blocks(text: str, *, labelled_only: bool = False) -> list[str]:
    """The PEM certificate blocks of a bundle, normalised. `labelled_only`: only those certifi
    ships, each after its `# Label:` comment (a certificate appended by something else has none)."""
    blocks = []
    parts = text.split("-----BEGIN CERTIFICATE-----")
    for before, part in itertools.pairwise(parts):
        if labelled_only and "# Label:" not in before.rsplit("-----END CERTIFICATE-----", 1)[-1]:
            continue
        blocks.append("".join(part.split("-----END CERTIFICATE-----")[0].split()))
    return blocks


def test_artifact_layout(built_artifacts: list[Path]) -> None:
    for artifact in built_artifacts:
        rules = (artifact / "rules" / "router.yaml").read_text()
        assert rules == (ROOT / "rules" / "router.yaml").read_text(), artifact
        assert not (artifact / "rules" / "samples").exists(), "the replay demo log is not for Lambda"
        # certifi's roots as a hashed directory, one file per root (tests/test_tls.py: how it is used)
        # Every root certifi ships, and nothing else. (The sandbox these tests run in appends its
        # own egress CA, unlabelled, to certifi bundles on disk, at times after the build.)
        roots = pem_blocks((artifact / "certifi" / "cacert.pem").read_text(), labelled_only=True)
        hashed = [pem_blocks(f.read_text()) for f in (artifact / "cacerts").iterdir()]
        assert len(roots) > 50
        assert all(len(blocks) == 1 for blocks in hashed), artifact  # one root per file
        assert sorted(blocks[0] for blocks in hashed) == sorted(roots), artifact
        assert (artifact / "run.sh").stat().st_mode & 0o111
        assert not list(artifact.glob("*.egg-info"))
        assert not (artifact / "bin").exists()
        # Bytecode is shipped (Lambda's /var/task is read-only) and needs no source check.
        pyc = artifact / "tier_router" / "__pycache__" / "lambda_entry.cpython-312.pyc"
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{pyc}: expected an unchecked-hash .pyc"


# -- StreamingMode=lwa: run.sh starts uvicorn from the artifact ---------------------------------


def test_run_sh_serves_a_real_sse_stream(
    artifact: Path, python312: str, rules_file: Path, tmp_path: Path
) -> None:
    """What the Lambda Web Adapter talks to: run.sh -> uvicorn (h11, asyncio) on 127.0.0.1.
    The layer itself (a binary from AWS) cannot be run here; this is everything behind it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python3 = bin_dir / "python3"  # Lambda's `python3`; -S: nothing but the artifact and stdlib
    python3.write_text(f'#!/bin/sh\nexec "{python312}" -S -B "$@"\n')
    python3.chmod(0o755)
    port = free_port()
    env = {
        **base_env(),
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LAMBDA_TASK_ROOT": str(artifact),
        "AWS_LWA_PORT": str(port),
        "TIER_ROUTER_STREAMING": "lwa",
        "TIER_ROUTER_RULES": str(rules_file),
        "TIER_ROUTER_STORE": "memory://",
        "TIER_ROUTER_API_KEYS": f"{KEY_NAME}={ROUTER_KEY}",
        "FAKE_OPENAI_KEY": "sk-fake-upstream-key-123456",
    }
    proc = subprocess.Popen(
        ["/bin/sh", str(artifact / "run.sh")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # what LWA's readiness check does (AWS_LWA_READINESS_CHECK_PATH=/healthz)
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline, "uvicorn did not become ready"
            time.sleep(0.05)
        body = {
            "model": "auto",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "why is the sky blue"}],
        }
        with httpx.stream(
            "POST",
            base + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {ROUTER_KEY}"},
            timeout=30,
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-router-rule"] == "hard-question"
            assert "transfer-encoding" in response.headers  # streamed, not buffered
            text = "".join(response.iter_text())
        events = sse_events(text)
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["usage"]["total_tokens"] > 0
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert ROUTER_KEY not in stderr.decode()
