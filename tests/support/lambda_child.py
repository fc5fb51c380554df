"""Invoke the Lambda handler the way Lambda does, in a fresh interpreter; results as JSON.

    python tests/support/lambda_child.py JOB.json RESULT.json

JOB.json: {"events": [event, ...]}. The handler module builds the app at import from this
process's environment (TIER_ROUTER_RULES, TIER_ROUTER_STORE, TIER_ROUTER_API_KEYS,
AWS_LAMBDA_FUNCTION_NAME, ...), as Lambda's init phase does; every event is then one warm
invocation with its own context (and its own `aws_request_id`). stdout is left to the router
(its access log); the results go to RESULT.json.
"""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from types import SimpleNamespace
from typing import Any


class LambdaContext(SimpleNamespace):
    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        job: dict[str, Any] = json.load(f)
    handler = importlib.import_module("tier_router.lambda_entry").lambda_handler
    results = []
    for event in job["events"]:
        context = LambdaContext(
            aws_request_id=str(uuid.uuid4()),
            function_name="tier-router-lifecycle",
            memory_limit_in_mb="1024",
        )
        try:
            results.append({"context_id": context.aws_request_id, "result": handler(event, context)})
        except Exception as exc:  # reported, not raised: the other invocations still count
            results.append({"context_id": context.aws_request_id, "raised": repr(exc)})
    with open(argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
