"""The promise, checked: access-log lines, the spend ledger, the budget and what each client
saw agree, request for request.

A `Window` is taken while the router is idle (`quiesce`); the scenario runs; `collect`
polls `/v1/router/status` until the ledger has caught up with the scenario's lines (settling
happens after the response, in the background) and stays there, then `problems` lists every
disagreement. Nothing is asserted with a fixed sleep: the only waits are polls with deadlines,
plus a short quiet period that proves nothing more arrives (longer than the access log's
0.2 s flush interval).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from tests.support.clients import Seen
from tests.support.router_process import Ledger, Router

QUIET_S = 0.4
"""How long the ledger and the log must stay unchanged to count as settled (twice the access
log's flush interval)."""
SETTLE_DEADLINE_S = 20.0


@dataclass
class Window:
    router: Router
    start: int  # index into the router's request lines
    base: Ledger


@dataclass
class Observed:
    lines: list[dict[str, Any]]  # the scenario's chat request lines
    ledger: Ledger
    base: Ledger

    @property
    def requests(self) -> int:
        return self.ledger.requests - self.base.requests

    @property
    def cost(self) -> int:
        return self.ledger.total - self.base.total

    @property
    def budget_spent(self) -> int | None:
        if self.ledger.budget_spent is None or self.base.budget_spent is None:
            return None
        return self.ledger.budget_spent - self.base.budget_spent

    @property
    def budget_committed(self) -> int | None:
        if self.ledger.budget_committed is None or self.base.budget_committed is None:
            return None
        return self.ledger.budget_committed - self.base.budget_committed


def _state(router: Router) -> tuple[Any, ...]:
    ledger = router.ledger()
    return (ledger.key(), len(router.chat_lines()))


def quiesce(router: Router, deadline_s: float = SETTLE_DEADLINE_S) -> Window:
    """Wait until nothing changes for QUIET_S (earlier scenarios fully settled); a window."""
    end = time.monotonic() + deadline_s
    state, since = _state(router), time.monotonic()
    while time.monotonic() - since < QUIET_S:
        if time.monotonic() > end:
            break
        time.sleep(0.1)
        new = _state(router)
        if new != state:
            state, since = new, time.monotonic()
    return Window(router, len(router.request_lines()), router.ledger())


def line_cost(line: dict[str, Any]) -> int:
    cost = line.get("cost_micro_usd")
    return cost if isinstance(cost, int) and not isinstance(cost, bool) else 0


def routed(line: dict[str, Any]) -> bool:
    """The line of a request that got past auth, body parsing and routing — its routing
    decision is on the line — and was not then refused by a limit (429 `refused`). Such a
    request was admitted: the ledger must count it once."""
    return line.get("rule") is not None and line.get("outcome") != "refused"


def _agrees(obs: Observed, expected_lines: int) -> bool:
    total = sum(line_cost(line) for line in obs.lines)
    return (
        len(obs.lines) == expected_lines
        and obs.requests == sum(routed(line) for line in obs.lines)
        and obs.cost == total
        and obs.budget_spent in (None, total)
        and obs.budget_committed == obs.budget_spent
    )


def collect(window: Window, expected_lines: int, deadline_s: float = SETTLE_DEADLINE_S) -> Observed:
    """Poll until ledger and log agree with `expected_lines` and stay so for QUIET_S (or the
    deadline passes); the last observation either way."""
    router = window.router
    end = time.monotonic() + deadline_s
    stable_since: float | None = None
    last_key: tuple[Any, ...] | None = None
    while True:
        obs = Observed(router.chat_lines(window.start), router.ledger(), window.base)
        key = (obs.ledger.key(), len(obs.lines))
        if _agrees(obs, expected_lines) and key == last_key:
            if stable_since is not None and time.monotonic() - stable_since >= QUIET_S:
                return obs
        else:
            stable_since = time.monotonic() if _agrees(obs, expected_lines) else None
        last_key = key
        if time.monotonic() > end:
            return obs
        time.sleep(0.1)


def report(found: list[str], limit: int = 25) -> str:
    """The problems for an assertion message: the first `limit`, and how many more."""
    shown = found[:limit]
    more = f"\n... and {len(found) - limit} more" if len(found) > limit else ""
    return f"{len(found)} disagreement(s):\n" + "\n".join(shown) + more


def problems(obs: Observed, seen: Sequence[Seen], *, reached: Collection[str] = ()) -> list[str]:
    """Every way the log, the ledger, the budget and the clients disagree. `reached`: the
    tags the provider received (those requests were surely admitted, like every request
    whose client got a response)."""
    out: list[str] = []
    lines = obs.lines
    if len(lines) != len(seen):
        out.append(f"{len(seen)} requests sent, {len(lines)} access-log lines")
    ids = [line.get("request_id") for line in lines]
    missing_id = sum(1 for i in ids if not isinstance(i, str) or not i)
    if missing_id:
        out.append(f"{missing_id} line(s) without a request_id")
    dupes = {i: n for i, n in Counter(i for i in ids if i).items() if n > 1}
    if dupes:
        out.append(f"request ids on more than one line: {dupes}")
    for name, ok in (
        ("status", lambda v: isinstance(v, int) and not isinstance(v, bool)),
        ("outcome", lambda v: isinstance(v, str) and bool(v)),
        ("cost_estimated", lambda v: isinstance(v, bool)),
        ("cost_micro_usd", lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool))),
    ):
        bad = [line for line in lines if not ok(line.get(name, ...))]
        if bad:
            example = bad[0].get(name, "absent")
            out.append(f"{len(bad)} line(s) with a bad or missing {name!r} (e.g. {example!r})")
    by_id = {line.get("request_id"): line for line in lines}
    for s in seen:
        if s.error:
            out.append(f"{s.describe()}: client error {s.error}")
        if s.status is not None and s.status != s.expect_status:
            out.append(f"{s.describe()}: client got status {s.status}, expected {s.expect_status}")
        if s.status is None:
            continue  # no headers reached the client: matched by count only
        if not s.request_id:
            out.append(f"{s.describe()}: response without x-router-request-id")
            continue
        line = by_id.get(s.request_id)
        if line is None:
            out.append(f"{s.describe()}: no access-log line with this request id")
            continue
        if line.get("status") != s.status:
            out.append(f"{s.describe()}: line status {line.get('status')}, client got {s.status}")
        if s.behaviour == "plain":
            if s.header_cost is None:
                out.append(f"{s.describe()}: 200 without x-router-cost-usd")
            elif line.get("cost_micro_usd") != s.header_cost:
                out.append(
                    f"{s.describe()}: header cost {s.header_cost} != line cost {line.get('cost_micro_usd')}"
                )
        if s.behaviour in ("stream_end", "stream_parse", "stream_iter"):
            if s.usage_cost is None:
                out.append(f"{s.describe()}: the final usage chunk has no cost_usd")
            elif line.get("cost_micro_usd") != s.usage_cost:
                cost = line.get("cost_micro_usd")
                out.append(f"{s.describe()}: usage chunk cost {s.usage_cost} != line cost {cost}")
        if s.exact and line.get("cost_estimated") is not False:
            flag = line.get("cost_estimated", "absent")
            out.append(f"{s.describe()}: cost_estimated is {flag!r} though usage arrived")
        if s.behaviour == "first_chunk" and line.get("cost_estimated") is not True:
            out.append(
                f"{s.describe()}: left mid-stream before the usage, yet cost_estimated is "
                f"{line.get('cost_estimated')!r} (cost {line.get('cost_micro_usd')!r})"
            )
        if s.behaviour in ("plain", "stream_end") and line.get("outcome") != "ok":
            out.append(f"{s.describe()}: outcome {line.get('outcome')!r} for a request read to the end")
    return _ledger_problems(obs, seen, reached) + out


def _ledger_problems(obs: Observed, seen: Sequence[Seen], reached: Collection[str]) -> list[str]:
    out: list[str] = []
    lines = obs.lines
    admitted = sum(routed(line) for line in lines)
    surely = sum(1 for s in seen if s.behaviour != "refused" and (s.status is not None or s.tag in reached))
    if admitted < surely:
        out.append(
            f"only {admitted} lines carry a routing decision, but {surely} requests surely got past "
            "routing (their client got an answer, or the provider got them)"
        )
    gone = [line for line in lines if line.get("status") == 499]
    expected_gone = sum(1 for s in seen if s.expect_status == 499)
    if len(gone) != expected_gone:
        out.append(f"{expected_gone} clients left before the answer, {len(gone)} lines with status 499")
    total = sum(line_cost(line) for line in lines)
    if obs.requests != admitted:
        out.append(f"ledger counted {obs.requests} requests, {admitted} lines are of admitted requests")
    if obs.cost != total:
        out.append(f"ledger cost {obs.cost} µ$ != sum of the lines' cost_micro_usd {total} µ$")
    committed = obs.budget_committed
    if committed is not None and committed != obs.budget_spent:
        out.append(
            f"budget committed moved by {committed} µ$ but spent by {obs.budget_spent} µ$: "
            "reservations left unsettled (or settled twice) once the router is idle"
        )
    if obs.budget_spent is None:
        out.append("no global budget in /v1/router/status (the rules configure daily_usd)")
    elif obs.budget_spent != total:
        out.append(f"budget spent {obs.budget_spent} µ$ != sum of the lines' cost {total} µ$")
    if total == 0:
        out.append("every cost is zero: the scenario proves nothing about costs")
    return out
