"""SnapStart's hooks in the BUILT artifact: a snapshot and a restore as Lambda's managed runtime
runs them (tests/deploy/snapstart_child.py, a fresh python3.12 with only the artifact and the
standard library, plus the runtime's `snapshot_restore_py` where the runtime keeps it), then
requests served. What a restored environment must not share with the snapshot — and with
every other environment restored from it — is renewed: the provider connection, the request
ids, the random state, the spend holds' names and the provider key cached from SSM."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import CHILD_TIMEOUT_S, base_env, load_event, rules_for
from tests.support.fake_providers import FakeProviders
from tests.support.moto_server import MotoServer

pytestmark = pytest.mark.integration

CHILD = Path(__file__).with_name("snapstart_child.py")
RUNTIME = Path(__file__).with_name("lambda_runtime")
ROUTER_KEY = "rk-snapstart-test-0123456789"
OLD_KEY, NEW_KEY = "sk-before-the-snapshot-111111", "sk-rotated-while-frozen-222222"


@pytest.fixture(scope="module")
def restored(
    artifact: Path,
    python312: str,
    _fake_providers: FakeProviders,
    moto: MotoServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """One snapshot and restore for the module's tests (a child process of a few seconds); the
    report gets what the upstream saw (`upstream`: each request's client port and headers)."""
    upstream = _fake_providers.reset().a
    tmp_path = tmp_path_factory.mktemp("snapstart")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(json.dumps(rules_for(upstream.url)))  # JSON is YAML
    table = f"t-{uuid.uuid4().hex[:12]}"
    moto.create_table(table)
    prefix = f"/tier-router-{uuid.uuid4().hex[:8]}/providers/"
    moto.botocore("ssm").put_parameter(
        Name=prefix + "FAKE_OPENAI_KEY", Value=OLD_KEY, Type="SecureString", Overwrite=True
    )
    env = {
        **base_env(),
        "TIER_ROUTER_RULES": str(rules_file),
        "TIER_ROUTER_STORE": f"dynamodb://{table}?endpoint={moto.endpoint}",
        "TIER_ROUTER_API_KEYS": f"snap={ROUTER_KEY}",
        "TIER_ROUTER_SECRETS_SSM_PREFIX": prefix,
        "AWS_ENDPOINT_URL_SSM": moto.endpoint,
    }
    job = {
        "event": load_event("function_url_chat_base64.json", f"Bearer {ROUTER_KEY}"),
        "ssm": {
            "endpoint": moto.endpoint,
            "name": prefix + "FAKE_OPENAI_KEY",
            "key_env": "FAKE_OPENAI_KEY",
            "rotated": NEW_KEY,
        },
    }
    job_path, result = tmp_path / "job.json", tmp_path / "result.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.run(
        [python312, "-I", "-S", "-B", str(CHILD), str(artifact), str(RUNTIME), str(job_path), str(result)],
        env=env,
        cwd=artifact,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"snapstart child failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return {**json.loads(result.read_text()), "upstream": upstream.stats()["recent"]}


def test_the_artifact_ships_no_runtime_module_and_registers_its_hooks_with_the_runtimes(
    artifact: Path, restored: dict[str, Any]
) -> None:
    assert not list(artifact.rglob("snapshot_restore_py*"))
    assert restored["runtime_module"] == str((RUNTIME / "snapshot_restore_py.py").resolve())
    assert restored["hooks"] == {
        "before_snapshot": ["tier_router.snapstart.before_snapshot"],
        "after_restore": ["tier_router.snapstart.after_restore"],
    }


def test_requests_after_the_restore_are_served_on_new_connections(restored: dict[str, Any]) -> None:
    assert [r["status"] for r in [restored["primed"], *restored["after"]]] == [200, 200, 200]
    ports = [r["client_port"] for r in restored["upstream"]]
    assert len(ports) == 3
    primed, after = ports[0], ports[1:]
    assert primed not in after  # the snapshot's pooled connection was closed, not reused


def test_ids_random_state_and_hold_names_are_drawn_anew(restored: dict[str, Any]) -> None:
    snapshot, now = restored["snapshot"], restored["restored"]
    for name in ("prefix", "holds_process", "random", "jitter"):
        assert now[name] != snapshot[name], name
    primed_id = restored["primed"]["request_id"]
    after_ids = [r["request_id"] for r in restored["after"]]
    assert primed_id == f"{snapshot['prefix']}00000001"
    assert after_ids == [f"{now['prefix']}00000001", f"{now['prefix']}00000002"]  # a fresh counter


def test_the_cached_provider_key_is_refreshed_after_the_restore(restored: dict[str, Any]) -> None:
    assert restored["keys_source"] == "SSMKeySource"
    assert restored["key_cached_before_snapshot"] == [OLD_KEY]
    assert restored["restored"]["keys_stale"] is True
    assert restored["key_after_refresh"] == [NEW_KEY]  # rotated while frozen
    sent = [r["headers"]["authorization"] for r in restored["upstream"]]
    assert sent == [f"Bearer {OLD_KEY}", f"Bearer {OLD_KEY}", f"Bearer {NEW_KEY}"]
