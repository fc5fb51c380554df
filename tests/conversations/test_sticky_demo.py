"""Sticky conversations on the demo rules (`rules/local-demo.yaml`, mock providers in-process):
a cascade escalation moves a conversation and the next turn stays on the escalated tier;
streamed turns are sticky too; POST /v1/route/explain says when stickiness placed a turn.
The real openai SDK, the default store (SQLite), request log on."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.support.clients import sync_client
from tests.support.router_app import app_settings, build_app, serve_in_thread

DEMO = Path(__file__).resolve().parents[2] / "rules" / "local-demo.yaml"
KEY = "rk-demo"


@contextlib.contextmanager
def demo_router(tmp_path: Path) -> Iterator[tuple[openai.OpenAI, str]]:
    rules = yaml.safe_load(DEMO.read_text())
    settings = app_settings(store_url=f"sqlite:///{tmp_path / 'state.db'}", api_keys=(KEY,))
    with serve_in_thread(build_app(rules, settings=settings)) as url, sync_client(url, KEY, 15.0) as client:
        yield client, url


def send(client: openai.OpenAI, messages: list[dict[str, Any]], **extra: Any) -> tuple[str, dict[str, str]]:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=messages, user="alice", **extra
    )
    return raw.parse().choices[0].message.content or "", dict(raw.headers)


def test_an_escalation_moves_the_conversation_and_the_next_turn_stays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with demo_router(tmp_path) as (client, _):
        for i in range(40):  # mock-fast gets ~40% of JSON answers wrong: find one that escalates
            messages = [{"role": "user", "content": f"Give me item {i} as JSON."}]
            answer, headers = send(client, messages, response_format={"type": "json_object"})
            if "x-router-escalated-from" in headers:
                break
        else:
            pytest.fail("no answer escalated in 40 tries")
        assert (headers["x-router-tier"], headers["x-router-model"]) == ("premium", "large")
        messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And another?"}]
        answer, headers = send(client, messages, response_format={"type": "json_object"})
        assert (headers["x-router-tier"], headers["x-router-model"]) == ("premium", "large")
        assert "x-router-escalated-from" not in headers  # placed there, not escalated again
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    escalated, next_turn = requests[-2], requests[-1]
    assert escalated["conversation"]["moved_by"] == "escalation"
    assert next_turn["conversation"]["stick"] == "kept"
    assert next_turn["conversation"]["remembered"] == "large"


def test_streamed_turns_are_sticky(tmp_path: Path) -> None:
    with demo_router(tmp_path) as (client, _):
        messages: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
        models = []
        for follow_up in ["tell me more", "Why is the sky blue? Explain it in depth please."]:
            with client.chat.completions.with_streaming_response.create(
                model="auto", messages=messages, user="alice", stream=True
            ) as response:
                models.append(response.headers["x-router-model"])
                text = "".join(
                    chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices
                )
            messages += [{"role": "assistant", "content": text}, {"role": "user", "content": follow_up}]
        _, headers = send(client, messages)  # the rules alone: `hard-question` -> premium
    assert models == ["small", "small"]
    assert headers["x-router-model"] == "small"
    assert headers["x-router-rule"] == "hard-question"


def test_explain_says_when_a_decision_came_from_stickiness(tmp_path: Path) -> None:
    with demo_router(tmp_path) as (client, _url):
        messages: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
        answer, _ = send(client, messages)
        messages += [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "Why is the sky blue?"},
        ]
        explained = client.post(
            "/route/explain", cast_to=object, body={"model": "auto", "messages": messages, "user": "alice"}
        )
        again = client.post(  # explain writes nothing: a second explain reads the same memory
            "/route/explain", cast_to=object, body={"model": "auto", "messages": messages, "user": "alice"}
        )
    assert isinstance(explained, dict)
    assert explained["rule"] == "hard-question"
    assert explained["tier"] == "budget"  # kept on the conversation's model, not premium
    assert explained["chain"][0]["model"] == "small"
    conversation = explained["conversation"]
    assert conversation["stick"] == "kept"
    assert conversation["remembered"] == "small"
    assert conversation["estimate"]["stay_micro_usd"] <= conversation["estimate"]["move_micro_usd"]
    assert "conversation kept on small" in explained["why"]
    assert again == explained
