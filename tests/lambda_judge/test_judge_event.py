"""The judge event on Lambda: queued by `quality.dispatch` (a fake Invoke API on 127.0.0.1),
run by `lambda_entry` with the app built at import, as Lambda's init phase does."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest
from tier_router.aws.invoke import LambdaInvoker
from tier_router.quality.dispatch import LambdaDispatch
from tier_router.quality.sample import Sample
from tier_router.settings import Settings

from tests.support.fake_lambda import FakeLambda
from tests.support.moto_server import FAKE_ENV

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "lambda_events"
SAMPLE = Sample(
    request_id="req-7",
    body={"model": "auto", "messages": [{"role": "user", "content": "Why is the sky blue? ☀"}]},
    answer="Rayleigh scattering.",
    tier="budget",
    reference="premium",
    rule="default",
    model="small",
    arm="exp/b",
    key="team-a",
    cost=120,
    features={"chars": 24, "messages": 1},
)


class FakeJudging:
    """`Judging.run`'s shape: records the samples it is given; `fail` makes it raise."""

    def __init__(self, fail: bool = False) -> None:
        self.samples: list[Sample] = []
        self.fail = fail
        self.dispatch = None

    async def run(self, sample: Sample) -> None:
        await asyncio.sleep(0)
        self.samples.append(sample)
        if self.fail:
            raise RuntimeError("the judge model answered garbage")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The current event loop, as Mangum (and so `lambda_entry`) finds it on Lambda."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop_policy(None)  # the next test's main thread gets a fresh loop again


@pytest.fixture
def entry(
    monkeypatch: pytest.MonkeyPatch, aws_env: dict[str, str], loop: asyncio.AbstractEventLoop
) -> Iterator[ModuleType]:
    monkeypatch.setenv("TIER_ROUTER_RULES", str(ROOT / "rules" / "local-demo.yaml"))
    monkeypatch.setenv("TIER_ROUTER_STORE", "memory://")
    for name in ("tier_router.lambda_entry", "tier_router.asgi"):
        sys.modules.pop(name, None)
    yield importlib.import_module("tier_router.lambda_entry")
    for name in ("tier_router.lambda_entry", "tier_router.asgi"):
        sys.modules.pop(name, None)


@pytest.fixture
def fake(aws_env: dict[str, str]) -> Iterator[FakeLambda]:
    with FakeLambda.running() as server:
        yield server


def context() -> SimpleNamespace:
    return SimpleNamespace(aws_request_id="inv-1", function_name="tier-router", memory_limit_in_mb="512")


def dispatch_to(fake: FakeLambda) -> LambdaDispatch:
    credentials = Settings.from_env(FAKE_ENV).aws_credentials
    return LambdaDispatch(LambdaInvoker("tier-router-fn", credentials=credentials, endpoint=fake.endpoint))


def test_a_dispatched_sample_is_judged_by_the_event_it_queued(
    entry: ModuleType, fake: FakeLambda, loop: asyncio.AbstractEventLoop
) -> None:
    dispatch = dispatch_to(fake)

    async def send() -> None:
        try:
            await dispatch(SAMPLE)
        finally:
            await dispatch.invoker.aclose()

    loop.run_until_complete(send())
    [call] = fake.calls
    event = call.event()
    assert event["tier_router"] == "judge"
    judging = FakeJudging()
    entry.app.gateway.quality.judging = judging

    summary = entry.lambda_handler(event, context())

    assert summary == {"tier_router": "judge", "request_id": "req-7", "judged": True}
    assert judging.samples == [SAMPLE]  # every field survived JSON and Sample.from_event


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"tier_router": "judge"}, "sample is a JSON object"),
        ({"tier_router": "judge", "sample": "req-7"}, "sample is a JSON object"),
        ({"tier_router": "judge", "sample": {**SAMPLE.as_event(), "tier": None}}, "sample.tier"),
        ({"tier_router": "judge", "sample": {**SAMPLE.as_event(), "body": []}}, "sample.body"),
        ({"tier_router": "judge", "sample": {**SAMPLE.as_event(), "cost": -1}}, "sample.cost"),
    ],
)
def test_a_malformed_judge_event_is_refused_not_raised(
    entry: ModuleType, event: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    judging = FakeJudging()
    entry.app.gateway.quality.judging = judging
    summary = entry.lambda_handler(event, context())
    assert summary["judged"] is False
    assert summary["error"].startswith("malformed judge event: ")
    assert reason in summary["error"]
    assert judging.samples == []
    assert reason in caplog.text  # logged: nobody reads an asynchronous invocation's result


def test_a_judge_event_where_judging_is_off_is_refused(entry: ModuleType) -> None:
    entry.app.gateway.quality.judging = None  # a rules file without quality.judge
    summary = entry.lambda_handler({"tier_router": "judge", "sample": SAMPLE.as_event()}, context())
    assert summary["judged"] is False
    assert "judging is off" in summary["error"]


def test_a_failing_judgement_is_reported_not_raised(
    entry: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    entry.app.gateway.quality.judging = FakeJudging(fail=True)
    summary = entry.lambda_handler({"tier_router": "judge", "sample": SAMPLE.as_event()}, context())
    assert summary == {
        "tier_router": "judge",
        "request_id": "req-7",
        "judged": False,
        "error": "the judgement failed (logged)",
    }
    assert "the judge model answered garbage" in caplog.text


def test_an_unknown_router_event_is_refused(entry: ModuleType) -> None:
    summary = entry.lambda_handler({"tier_router": "reindex"}, context())
    assert summary["tier_router"] is None
    assert "unknown tier_router event 'reindex'" in summary["error"]


class DispatchingLoop:
    """What `QualityLoop.finished` does for a sampled request on Lambda: hand the sample to the
    dispatch in a task on the lifecycle's drainer (never awaited by the request)."""

    def __init__(self, drainer: Any, dispatch: LambdaDispatch) -> None:
        self.drainer = drainer
        self.dispatch = dispatch

    async def finished(self, exchange: Any) -> None:
        self.drainer.start(self.slow_dispatch(exchange.request_id))

    async def slow_dispatch(self, request_id: str) -> None:
        await asyncio.sleep(0.05)  # still pending when the response is complete
        await self.dispatch(Sample(request_id, {"messages": []}, "a", "budget", "premium"))


def test_the_judge_event_is_queued_before_the_invocation_returns(
    entry: ModuleType, fake: FakeLambda, loop: asyncio.AbstractEventLoop
) -> None:
    lifecycle = entry.app.gateway.lifecycle
    dispatch = dispatch_to(fake)
    lifecycle.quality = DispatchingLoop(lifecycle.drainer, dispatch)
    event = json.loads((EVENTS / "function_url_chat_base64.json").read_text())

    result = entry.lambda_handler(event, context())

    body = base64.b64decode(result["body"]) if result.get("isBase64Encoded") else result["body"]
    assert result["statusCode"] == 200, body
    # Once the handler returns Lambda freezes the container: the Invoke must be done by then.
    assert len(fake.calls) == 1
    assert fake.calls[0].event()["tier_router"] == "judge"
    assert not lifecycle.drainer.pending
    loop.run_until_complete(dispatch.invoker.aclose())


def test_the_gateway_gives_judging_the_lambda_dispatch(tmp_path: Path, fake: FakeLambda) -> None:
    import tier_router.gateway as gateway_module
    import yaml

    rules = yaml.safe_load((ROOT / "rules" / "local-demo.yaml").read_text())
    rules["quality"] = {"sample": 0.5, "reference": "premium", "judge": {"model": "large"}}
    rules_path = tmp_path / "judged.yaml"
    rules_path.write_text(yaml.safe_dump(rules))
    env = {
        **FAKE_ENV,
        "TIER_ROUTER_RULES": str(rules_path),
        "TIER_ROUTER_STORE": "memory://",
        "AWS_ENDPOINT_URL_LAMBDA": fake.endpoint,
    }
    local = gateway_module.Gateway(Settings.from_env(env), client=httpx.AsyncClient())
    assert local.quality.judging.dispatch is None  # a background task on this process
    on_lambda = gateway_module.Gateway(
        Settings.from_env({**env, "AWS_LAMBDA_FUNCTION_NAME": "tier-router-fn"}), client=local.client
    )
    dispatch = on_lambda.quality.judging.dispatch
    assert isinstance(dispatch, LambdaDispatch)
    assert dispatch.invoker.function_name == "tier-router-fn"
    assert dispatch.invoker._http is on_lambda.client  # the shared client, its pooled connections
