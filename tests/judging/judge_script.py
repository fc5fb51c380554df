"""The scripted providers of the judging tests: `AnswerScript`'s sides (cheap, mid, good) plus a
scripted judge (`/judge/...`) that reads the prompt it is given, and a gate that holds chosen
sides until the test opens it.

    app = JudgeScript()
    app.script("s1", cheap=[Answer("CHEAP-ANSWER")], good=[Answer("GOOD-ANSWER")])
    app.judges["s1"] = prefers("CHEAP-ANSWER")          # the judge's policy for this script
    app.gated = {"good", "judge"}                         # held until app.gate.set()

A judge policy gets the judge's user message and returns an `Answer` (its content is what
the judge model "says").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.answer_script import PRICES, PROVIDER_KEY_ENV, Answer, AnswerScript, answer_rules
from tests.support.router_process import Router
from tests.support.stream_script import SCRIPT

Policy = Callable[[str], Answer]
JUDGE_PRICE = {"input": 3, "output": 12}
ANSWER = re.compile(r"<answer_([AB])>\n(.*?)\n</answer_\1>", re.S)


def shown(prompt: str) -> dict[str, str]:
    """The answers a judge prompt shows: {"A": text, "B": text}."""
    return {m.group(1): m.group(2) for m in ANSWER.finditer(prompt)}


def verdict(a: float, b: float, better: str) -> Answer:
    text = json.dumps({"a": a, "b": b, "better": better, "reason": "scripted"})
    return Answer(f"```json\n{text}\n```", prompt_tokens=300, completion_tokens=30)


def prefers(marker: str, winner: float = 9, loser: float = 3) -> Policy:
    """A judge that prefers whichever answer holds `marker`, wherever it is shown."""

    def policy(prompt: str) -> Answer:
        answers = shown(prompt)
        if marker in answers.get("A", ""):
            return verdict(winner, loser, "A")
        return verdict(loser, winner, "B")

    return policy


def first_shown(prompt: str) -> Answer:
    """A judge with position bias: always the answer shown first."""
    return verdict(8, 6, "A")


class JudgeScript(AnswerScript):
    def __init__(self) -> None:
        super().__init__()
        self.judges: dict[str, Policy] = {}
        self.gate = threading.Event()
        self.gate.set()
        self.gated: set[str] = set()
        self.waiting: dict[str, int] = {}
        """Requests held at the gate so far, per side."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        side = scope["path"].strip("/").split("/")[0]
        if side in self.gated and not self.gate.is_set():
            self.waiting[side] = self.waiting.get(side, 0) + 1
            await asyncio.to_thread(self.gate.wait)  # a threading.Event: set from the test's thread
        if side != "judge":
            await super().__call__(scope, receive, send)
            return
        body, answer = await self.next_reply(scope, receive, Answer(status=500))
        found = SCRIPT.search(json.dumps(body).encode())
        name = found.group(1).decode() if found else ""
        policy = self.judges.get(name)
        if policy is not None and not self.scripts.get(name, {}).get("judge"):  # scripted replies first
            answer = policy(body["messages"][-1]["content"])
        if answer.status == 599:  # the judge never answers (the router's timeout ends it)
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        await self.reply(send, body, answer)

    async def reply(self, send: Any, body: dict[str, Any], answer: Answer) -> None:
        status = answer.status
        payload = (
            answer.completion(str(body.get("model")))
            if status == 200
            else {"error": {"message": "scripted failure", "type": "server_error"}}
        )
        head = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})

    def judge_prompts(self, name: str) -> list[str]:
        return [body["messages"][-1]["content"] for body in self.calls(name, "judge")]


def judging_rules(
    url: str, quality: dict[str, Any], judge_total_s: float = 5.0, **sections: Any
) -> dict[str, Any]:
    """`answer_rules` (tiers budget/cheap, standard/mid, premium/good) plus a `judge` model on
    its own provider, and the `quality:` section given."""
    rules = answer_rules(
        url, quality={"reference": "premium", "judge": {"model": "judge"}, **quality}, **sections
    )
    rules["providers"]["judge"] = {
        "kind": "openai",
        "base_url": f"{url}/judge/v1",
        "api_key_env": PROVIDER_KEY_ENV,
        "timeouts": {"total": judge_total_s, "first_token": 5.0, "stall": 5.0},
        "retry": {"max_attempts": 1},
    }
    rules["models"]["judge"] = {"provider": "judge", "id": "judge-1", "price": JUDGE_PRICE}
    return rules


def judge_cost(answer: Answer) -> int:
    return answer.prompt_tokens * JUDGE_PRICE["input"] + answer.completion_tokens * JUDGE_PRICE["output"]


def price(side: str, answer: Answer) -> int:
    p = PRICES[side]
    return answer.prompt_tokens * p["input"] + answer.completion_tokens * p["output"]


@dataclass
class JudgeStack:
    app: JudgeScript
    router: Router
    store_path: Path

    def judgements(self) -> list[dict[str, Any]]:
        out = []
        for line in self.router.stdout_lines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("type") == "judgement":
                    out.append(record)
        return out

    def judgement(self, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.judgements():
                if record.get("request_id") == request_id:
                    return record
            time.sleep(0.02)
        raise AssertionError(f"no judgement line for {request_id}")

    def item(self, key: str) -> dict[str, Any]:
        from tier_router.store.sqlite import SQLiteStore

        async def read() -> dict[str, Any]:
            store = SQLiteStore(self.store_path)
            try:
                return dict(await store.get(key) or {})
            finally:
                await store.aclose()

        return asyncio.run(read())

    def quality_item(self) -> dict[str, Any]:
        """Today's `quality:<day>` item(s) of the router's SQLite store, all days summed."""
        from tier_router.store.sqlite import SQLiteStore

        async def read() -> dict[str, Any]:
            store = SQLiteStore(self.store_path)
            try:
                days = [time.strftime("%Y-%m-%d", time.gmtime(time.time() + d * 86_400)) for d in (-1, 0, 1)]
                items = await store.get_many([f"quality:{day}" for day in days])
            finally:
                await store.aclose()
            total: dict[str, Any] = {}
            for item in items.values():
                for name, value in item.items():
                    if isinstance(value, int):
                        total[name] = total.get(name, 0) + value
            return total

        return asyncio.run(read())


@contextlib.contextmanager
def judge_stack(workdir: Path, rules: Callable[[str], dict[str, Any]]) -> Iterator[JudgeStack]:
    """The real router (`tier-router serve`, SQLite store, logging on) in front of a JudgeScript."""
    from tests.support.loopback import run_uvicorn_in_thread
    from tests.support.router_process import running_router
    from tests.support.stack import PROVIDER_KEY, ROUTER_KEY, sqlite_url

    app = JudgeScript()
    with run_uvicorn_in_thread(app) as url:
        store = sqlite_url(workdir)
        env = {PROVIDER_KEY_ENV: PROVIDER_KEY}
        with running_router(workdir, rules(url), key=ROUTER_KEY, store_url=store, env=env) as router:
            yield JudgeStack(app, router, workdir.resolve() / "state.db")
