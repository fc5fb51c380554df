"""The health probe in the BUILT artifact (issue 14): an EventBridge scheduled event runs it
under python3.12 with only the artifact on sys.path, the breakers in DynamoDB (moto on
127.0.0.1): the healthy fake is checked with one GET /models, a dead provider's failure is
counted in the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import EVENTS, base_env, rules_for
from tests.deploy.test_built_artifact import scan
from tests.support.loopback import free_port
from tests.support.moto_server import MotoServer

pytestmark = pytest.mark.integration


def test_a_scheduled_event_probes_every_provider_on_dynamodb(
    run_artifact: Any, fakes: Any, tmp_path: Path, moto: MotoServer, table: str
) -> None:
    rules = rules_for(fakes.a.url)
    rules["providers"]["dead"] = {
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{free_port()}/v1",
        "api_key_env": "FAKE_OPENAI_KEY",
    }
    rules["models"]["dead-mini"] = {"provider": "dead", "id": "gpt-dead", "price": {"input": 1, "output": 1}}
    path = tmp_path / "rules.yaml"
    path.write_text(json.dumps(rules))
    env = {
        **base_env(),
        "TIER_ROUTER_RULES": str(path),
        "TIER_ROUTER_STORE": f"dynamodb://{table}?endpoint={moto.endpoint}",
        "FAKE_OPENAI_KEY": "sk-fake-upstream-key-123456",
    }
    scheduled = json.loads((EVENTS / "eventbridge_scheduled.json").read_text())

    report = run_artifact(env, [scheduled])

    result = report["invokes"][0]["result"]
    by_name = {p["provider"]: p for p in result["providers"]}
    assert result["healthy"] is False
    assert (by_name["fake-openai"]["outcome"], by_name["fake-openai"]["check"]) == ("ok", "GET /models")
    assert by_name["dead"]["outcome"] == "connect_error"
    assert fakes.a.stats()["model_lists"] == 1
    assert fakes.a.requests == 0  # no completion, nothing billed
    counted = {pk: item for pk, item in scan(moto, table).items() if pk.startswith("breaker:provider:dead@")}
    assert [item["failures"] for item in counted.values()] == [1], sorted(scan(moto, table))
    assert '"event":"ProviderUnhealthy"' in report["stdout"]
    assert "sk-fake-upstream-key" not in report["stdout"] + report["stderr"] + json.dumps(result)
