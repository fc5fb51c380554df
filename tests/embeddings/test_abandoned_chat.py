"""The embeddings adversary's hang-up finding, for chat (this directory's server and fakes: chat
tier `chat` = [chat-a on fake A]): a client that leaves while the provider is computing its
answer — plain or streamed, before the first byte — is charged the request's reservation, not 0.
The provider bills the request all the same, so charging 0 let a caller spend past the hard cap
by hanging up on big requests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.embeddings.conftest import start
from tests.support.fake_providers import FakeProviders


def chat_lines(router: Any) -> list[dict[str, Any]]:
    return [r for r in router.request_lines() if r["path"] == "/v1/chat/completions"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_chat_client_that_leaves_mid_attempt_is_charged_its_reservation(
    tmp_path: Path, fakes: FakeProviders, stream: bool
) -> None:
    with start(tmp_path, fakes, budgets={"daily_usd": 100.0}) as router:
        fakes.a.control(mode="timeout", delay_s=30)
        body = {"model": "auto", "stream": stream, "messages": [{"role": "user", "content": "leave " * 50}]}
        with pytest.raises(httpx.TimeoutException):
            httpx.post(router.url + "/v1/chat/completions", json=body,
                       headers={"authorization": f"Bearer {router.key}"}, timeout=0.5)  # fmt: skip
        fakes.a.wait_for(lambda stats: stats["requests"] == 1)
        deadline = time.monotonic() + 10
        while not chat_lines(router) and time.monotonic() < deadline:
            time.sleep(0.05)
        [line] = chat_lines(router)
        assert (line["outcome"], line["status"]) == ("client_gone", 499)
        assert [(a["model"], a["outcome"]) for a in line["attempts"]] == [("chat-a", "abandoned")]
        assert line["cost_estimated"] is True
        assert line["cost_micro_usd"] > 0  # the reservation: what the provider may bill
        ledger = router.ledger()
        assert ledger.budget_spent == ledger.total == line["cost_micro_usd"]
        assert ledger.budget_committed == ledger.budget_spent  # settled: nothing left held
