"""A SnapStart snapshot and restore of the BUILT artifact, in a fresh interpreter; report as JSON.

Started by tests/deploy/test_built_snapstart.py as

    python3.12 -I -S -B snapstart_child.py ARTIFACT_DIR RUNTIME_DIR JOB.json RESULT.json

As in artifact_child.py, only the standard library and ARTIFACT_DIR (first, as /var/task) are
on sys.path; RUNTIME_DIR comes after them, as Lambda's /var/runtime does: it holds the
`snapshot_restore_py` the managed runtime provides (a test double of its documented API; the
artifact ships none). Then what Lambda does with SnapStart, in order:

1. init: import the handler module (it registers its hooks with `snapshot_restore_py`);
2. one invocation, so that what a primed snapshot would hold exists: a pooled provider
   connection, the provider key cached from SSM, ids and random draws made;
3. the before-snapshot hooks (`get_before_snapshot()`), then the state a snapshot freezes;
4. while frozen, the provider key is rotated in SSM (moto, PutParameter over plain HTTP);
5. the after-restore hooks (`get_after_restore()`), called as the runtime calls them;
6. two invocations: what they used (their connections are read by the test on the upstream).

JOB.json: {"event": ..., "ssm": {"endpoint", "name", "rotated"}}.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import random
import sys
import urllib.request
from types import SimpleNamespace
from typing import Any


class LambdaContext(SimpleNamespace):
    """No `aws_request_id`: the router then draws its own ids (the prefix a restore renews)."""

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def rotate(ssm: dict[str, str]) -> None:
    """Overwrite the SSM parameter (moto checks no signature; the credential scope names SSM)."""
    body = {"Name": ssm["name"], "Value": ssm["rotated"], "Type": "SecureString", "Overwrite": True}
    scope = f"{os.environ['AWS_ACCESS_KEY_ID']}/20260101/us-east-1/ssm/aws4_request"
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only (moto)
        ssm["endpoint"] + "/",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AmazonSSM.PutParameter",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
        assert response.status == 200


def main(argv: list[str]) -> int:
    artifact, runtime_dir = os.path.realpath(argv[1]), os.path.realpath(argv[2])
    with open(argv[3], encoding="utf-8") as f:
        job: dict[str, Any] = json.load(f)
    sys.path.insert(0, artifact)
    sys.path.append(runtime_dir)

    entry = importlib.import_module("tier_router.lambda_entry")  # 1. init
    runtime = sys.modules["snapshot_restore_py"]
    from tier_router import lifecycle

    gateway = entry.app.gateway

    def invoke() -> dict[str, Any]:
        result = entry.lambda_handler(job["event"], LambdaContext(function_name="tier-router-test"))
        headers = {k.lower(): v for k, v in result["headers"].items()}
        return {"status": result["statusCode"], "request_id": headers.get("x-router-request-id")}

    report: dict[str, Any] = {
        "runtime_module": os.path.realpath(runtime.__file__),
        "hooks": {
            "before_snapshot": [f.__module__ + "." + f.__name__ for f, _, _ in runtime.get_before_snapshot()],
            "after_restore": [f.__module__ + "." + f.__name__ for f, _, _ in runtime.get_after_restore()],
        },
        "keys_source": type(gateway.keys).__name__,
    }
    report["primed"] = invoke()  # 2. a primed snapshot's state
    report["key_cached_before_snapshot"] = gateway.keys.known([job["ssm"]["key_env"]])

    for func, args, kwargs in runtime.get_before_snapshot():  # 3. the snapshot
        func(*args, **kwargs)
    # What an environment restored without the hooks would draw next: the snapshot's own state.
    replay_random, replay_jitter = random.Random(), random.Random()
    replay_random.setstate(random.getstate())
    replay_jitter.setstate(gateway.forwarder.rng.getstate())
    report["snapshot"] = {
        "prefix": lifecycle.REQUEST_ID_PREFIX,
        "holds_process": gateway.spend.guard.holds._process,
        "random": replay_random.random(),
        "jitter": replay_jitter.random(),
    }

    rotate(job["ssm"])  # 4. while frozen

    for func, args, kwargs in runtime.get_after_restore():  # 5. the restore, as the runtime runs it
        func(*args, **kwargs)
    report["restored"] = {
        "prefix": lifecycle.REQUEST_ID_PREFIX,
        "holds_process": gateway.spend.guard.holds._process,
        "random": random.random(),
        "jitter": gateway.forwarder.rng.random(),
        "keys_stale": gateway.keys._stale(gateway.keys._clock()),
    }
    report["after"] = [invoke()]  # 6. served from the cached key, refreshed in the background
    asyncio.get_event_loop().run_until_complete(gateway.keys.refresh())  # joins that refresh
    report["key_after_refresh"] = gateway.keys.known([job["ssm"]["key_env"]])
    report["after"].append(invoke())
    with open(argv[4], "w", encoding="utf-8") as f:
        json.dump(report, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
