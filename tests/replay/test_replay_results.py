"""`tier-router replay`: results per tier / rule / model / arm from the router's own log lines,
and the estimated cost of the new rules' cascades — on a crafted log, every number by hand.

Prices (conftest): cheap 1/2, mid 2/4, dear 10/30 µ$ per token; tiers budget [cheap],
standard [mid], premium [dear]. The new rules are the conftest's with cascades added by a thin
wrapper (`decision.cascade` / `rules.cascades`, the routing layer's interface)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tier_router.replay import render_text, replay
from tier_router.routing.engine import Rules

PROOF = "Please prove that there are infinitely many primes, carefully."


class CascadingDecision:
    """A decision with a `cascade` (only `.to` is read)."""

    def __init__(self, decision: Any, to: str | None) -> None:
        self._decision = decision
        self.cascade = None if to is None else SimpleNamespace(to=to)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._decision, name)


class CascadingRules:
    """`rules` with a cascade on some tiers: on their decisions and in `cascades`."""

    def __init__(self, rules: Rules, cascades: dict[str, str]) -> None:
        self._rules = rules
        self.cascades = {tier: SimpleNamespace(to=to) for tier, to in cascades.items()}
        self._to = cascades

    def decide(self, *args: Any, **kwargs: Any) -> CascadingDecision:
        decision = self._rules.decide(*args, **kwargs)
        return CascadingDecision(decision, self._to.get(decision.tier))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rules, name)


def router_line(**fields: Any) -> str:
    base = {
        "event": "request",
        "path": "/v1/chat/completions",
        "outcome": "ok",
        "status": 200,
        "key": "team-a",
        "prompt_tokens": 10,
        "completion_tokens": 10,
    }
    return json.dumps({**base, **fields})


def body(text: str, prompt: int, completion: int) -> str:
    return json.dumps(
        {
            "model": "auto",
            "messages": [{"role": "user", "content": text}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }
    )


ARM = {"experiment": "cheap-chat", "arm": "cascade"}
ESCALATION = {"tier": "budget", "model": "cheap", "validator": "json", "to": "standard", "cost_micro_usd": 20}
LOG = [
    # router lines: budget answers validated (cascade set): R1, R3, R4 passed, R2 escalated -> 1 of 4
    router_line(
        tier="budget",
        rule="short",
        model="cheap",
        cost_micro_usd=30,
        latency_ms=100,
        cascade="standard",
        **ARM,
    ),
    router_line(
        tier="standard",
        escalated_from="budget",
        escalations=[ESCALATION],
        rule="short",
        model="mid",
        cost_micro_usd=80,  # cheap's 20 + mid's 60
        latency_ms=300,
        cascade="standard",
        **ARM,
    ),
    router_line(
        tier="budget",
        rule="short",
        model="cheap",
        cost_micro_usd=30,
        latency_ms=50,
        cascade="standard",
        **ARM,
    ),
    router_line(
        tier="budget",
        rule="short",
        model="cheap",
        cost_micro_usd=30,
        latency_ms=70,
        cascade="standard",
        **ARM,
    ),
    # R5 standard, not validated, the control arm
    router_line(
        tier="standard",
        rule="default",
        model="mid",
        cost_micro_usd=60,
        latency_ms=200,
        experiment="cheap-chat",
        arm="control",
    ),
    # R6 every candidate failed: an error at no cost
    router_line(
        tier="premium", rule="hard", model=None, outcome="failed", status=502, cost_micro_usd=0, latency_ms=40
    ),
    # R7 refused before anything was admitted: never settled, not in the results
    router_line(
        tier="budget", rule="short", outcome="refused", status=429, cost_micro_usd=None, latency_ms=1
    ),
    # R8 budget, NOT validated when logged: the new budget cascade would validate it
    #    (cheap: 30 as logged; escalated: 10 x 2 + 10 x 4 = 60 on mid)
    router_line(tier="budget", rule="short", model="cheap", cost_micro_usd=30, latency_ms=60),
    # B1 re-routed: short -> budget: cheap 100 x 1 + 50 x 2 = 200; on mid 100 x 2 + 50 x 4 = 400
    body("hi", 100, 50),
    # B2 re-routed: budget: cheap 10 + 10 = 20; on mid 20 + 20 = 40
    body("ok", 10, 5),
    # B3 re-routed: "prove" -> premium: dear 1000 x 10 + 2000 x 30 = 70000; on mid 2000 + 8000 = 10000
    body(PROOF, 1000, 2000),
]


def run(tmp_path: Path, rules: Rules) -> dict[str, Any]:
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(LOG) + "\n", encoding="utf-8")
    new = CascadingRules(rules, {"budget": "standard", "premium": "standard"})
    return replay(path, new, progress=False, rules_path="new.yaml")  # type: ignore[arg-type]


def test_results_from_the_router_lines(tmp_path: Path, rules: Rules) -> None:
    results = run(tmp_path, rules)["results"]
    # budget (decided): R1-R4 and R8 — 5 requests, 30 + 80 + 30 + 30 + 30 = 200 µ$,
    # 100 + 300 + 50 + 70 + 60 = 580 ms, 1 escalation (R2), 4 successes; 200 / 4 per success
    assert results["tier"]["budget"] == {
        "requests": 5,
        "cost_usd": "0.000200",
        "avg_latency_ms": 116.0,
        "error_rate": 0.0,
        "escalation_rate": 0.2,
        "success_rate": 0.8,
        "cost_per_success_usd": "0.000050",
    }
    assert results["tier"]["premium"] == {
        "requests": 1,
        "cost_usd": "0.000000",
        "avg_latency_ms": 40.0,
        "error_rate": 1.0,
        "escalation_rate": 0.0,
        "success_rate": 0.0,
        "cost_per_success_usd": None,
    }
    assert set(results["tier"]) == {"budget", "standard", "premium"}  # R7 (refused) is not counted
    # models: cheap answered R1, R3, R4, R8 and R2's escalated answer (20 µ$); mid R2's final
    # answer (80 - 20) and R5
    cheap, mid = results["model"]["cheap"], results["model"]["mid"]
    assert (cheap["requests"], cheap["cost_usd"], cheap["escalation_rate"], cheap["success_rate"]) == (
        5,
        "0.000140",
        0.2,
        0.8,
    )
    assert (mid["requests"], mid["cost_usd"], mid["success_rate"], mid["cost_per_success_usd"]) == (
        2,
        "0.000120",
        0.5,
        "0.000120",
    )
    assert results["arm"]["cheap-chat/cascade"]["requests"] == 4
    assert results["arm"]["cheap-chat/cascade"]["cost_usd"] == "0.000170"
    assert results["arm"]["cheap-chat/cascade"]["escalation_rate"] == 0.25
    assert results["arm"]["cheap-chat/control"]["success_rate"] == 1.0
    assert results["rule"]["short"]["requests"] == 5
    assert results["key"]["team-a"]["requests"] == 7


def test_cascade_estimates(tmp_path: Path, rules: Rules) -> None:
    cascades = run(tmp_path, rules)["cascades"]
    # premium -> standard: B3 only; no validated premium line in the log: unmeasured, a range
    assert cascades[0] == {
        "tier": "premium",
        "to": "standard",
        "requests": 1,
        "cheap_micro_usd": 70000,
        "escalated_answer_micro_usd": 10000,
        "escalation_rate": None,
        "rate_measured_on": 0,
        "rate_measured": False,
        "estimated_micro_usd": None,
        "estimated_usd": None,
        "range_micro_usd": [70000, 80000],
    }
    # budget -> standard: B1, B2 and R8: cheap 200 + 20 + 30 = 250, escalated 400 + 40 + 60 = 500;
    # rate 1 of 4 validated budget lines: 250 + 500 / 4 = 375
    assert cascades[1] == {
        "tier": "budget",
        "to": "standard",
        "requests": 3,
        "cheap_micro_usd": 250,
        "escalated_answer_micro_usd": 500,
        "escalation_rate": 0.25,
        "rate_measured_on": 4,
        "rate_measured": True,
        "estimated_micro_usd": 375,
        "estimated_usd": "0.000375",
        "range_micro_usd": [250, 750],
    }
    assert len(cascades) == 2


def test_text_report(tmp_path: Path, rules: Rules) -> None:
    # The width check is the report's own: its first line names the log, whose tmp path depends on
    # where pytest puts it (longer under a pytest-xdist worker).
    text = render_text(run(tmp_path, rules)).replace(str(tmp_path / "log.jsonl"), "log.jsonl")
    assert "results by tier (logged)" in text
    assert "results by arm (logged)" in text
    assert "  budget -> standard: 3 requests, cheap answers $0.000250, escalated answers $0.000500" in text
    assert "    escalation rate 25.0% (measured on 4 validated lines): estimated $0.000375" in text
    assert "  premium -> standard: 1 requests, cheap answers $0.070000, escalated answers $0.010000" in text
    assert (
        "    escalation rate unmeasured (no validated line of premium in the log): $0.070000 .. $0.080000"
        in text
    )
    assert max(len(line) for line in text.splitlines()) <= 110


def test_no_cascades_without_them(tmp_path: Path, rules: Rules) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(LOG) + "\n", encoding="utf-8")
    data = replay(path, rules, progress=False)
    assert data["cascades"] == []
    assert data["results"]["tier"]["budget"]["requests"] == 5
    assert "cascades of these rules" not in render_text(data)


def test_html_report_escapes_logged_names(tmp_path: Path, rules: Rules) -> None:
    from tier_router.replay import render_html

    data = run(tmp_path, rules)
    data["results"]["arm"]["<b>x</b>"] = data["results"]["arm"]["cheap-chat/control"]
    page = render_html(data)
    assert "Results by arm (logged)" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<b>x</b>" not in page
    assert "escalation rate 25.0% (measured on 4 lines): estimated $0.000375" in page
