"""Issue 15: a router key limited to some tiers is never escalated to another one: its answer
is served with its failure in `x-router-validation`, as when the escalation tier cannot answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.answer_script import Answer, AnswerStack, answer_rules, answer_stack
from tests.support.stack import write_keys_file

pytestmark = pytest.mark.integration

BUDGET_ONLY = "rk-cascade-budget-only-0123456789"
ANY_TIER = "rk-cascade-any-tier-0123456789ab"


def rules(url: str) -> dict[str, Any]:
    return answer_rules(
        url,
        tiers={
            "budget": {"models": ["cheap"], "cascade": {"to": "premium", "on": ["json"], "stream": "hold"}},
            "standard": ["mid"],
            "premium": ["good"],
        },
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnswerStack]:
    workdir = tmp_path_factory.mktemp("cascade-keys")
    keys = write_keys_file(
        workdir / "keys.yaml", {"cheap-only": (BUDGET_ONLY, {"tiers": ["budget"]}), "all": (ANY_TIER, {})}
    )
    with answer_stack(workdir, rules, env={"TIER_ROUTER_KEYS_FILE": str(keys)}) as stack:
        yield stack


def ask(stack: AnswerStack, key: str, script: str, *, stream: bool) -> tuple[str, dict[str, str]]:
    client = openai.OpenAI(base_url=stack.router.url + "/v1", api_key=key, max_retries=0, timeout=20)
    with client.chat.completions.with_streaming_response.create(
        model="budget",
        messages=[{"role": "user", "content": f"hi [script={script}]"}],
        response_format={"type": "json_object"},
        stream=stream,
    ) as response:
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
        else:
            text = response.parse().choices[0].message.content
        return text, dict(response.headers)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "held-stream"])
def test_a_key_limited_to_the_cheap_tier_is_not_escalated(stack: AnswerStack, stream: bool) -> None:
    script = f"keyed-{stream}"
    stack.app.script(script, cheap=[Answer("{bad")], good=[Answer("{}")])

    text, headers = ask(stack, BUDGET_ONLY, script, stream=stream)

    assert text == "{bad"
    assert headers["x-router-model"] == "cheap"
    assert headers["x-router-validation"].startswith("json: ")
    assert "x-router-escalated-from" not in headers
    assert stack.app.calls(script, "good") == []

    text, headers = ask(stack, ANY_TIER, script, stream=stream)  # the same request, another key
    assert text == "{}"
    assert headers["x-router-escalated-from"] == "budget"
