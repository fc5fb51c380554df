"""Conversations in a replay: each turn placed as the router would place it, model switches per
conversation, and what the provider's prompt cache saves.

Three sets of conversations are counted, each in a `Tally`:

- `Sticky` (one per rules set: the rules, and the `--against` ones in a second, independent
  one): every re-routed line is a turn of the conversation `routing.conversation.identify`
  names (scope: the line's logged `key`, as the router's). The router's own
  `tier_router.conversations.Conversations` places each turn and remembers it, as one router
  process whose store is a `MemoryStore` on replay's clock (so a replay's switches are the
  router's, by construction): the answering model is the placed decision's first candidate (no
  failure, escalation or pacing is simulated), its tokens the logged usage or replay's
  estimate.
- the log's own (`"logged"`): the router's lines by their logged `conversation.conversation`
  label and `model`, and request lines that log the model that served them.

A switch is a turn on another model than its conversation's previous turn. Cache: a turn on the
same model as its previous turn, within `conversations.cache_ttl_s` of it (by the lines' `ts`),
reads that turn's prompt tokens (at most its own) from the cache; the log's own set counts the
cached tokens it logged instead. Costs are at the rules' prices, with the cache
(`cached_input` on the cached tokens) and without (`input`): the difference is the saving.

Time is the lines' `ts`; a line without one happens when the line before it did (a log without
any `ts` happens all at once: every cache warm, no memory expired). Memory: a conversation idle
for longer than `conversations.ttl_s` (and the cache's TTL) is folded into the counts and
forgotten: a later turn counts as a new conversation (the router's store has forgotten it too;
its process keeps its last 4,096 conversations' turns). Without `ts`, nothing is forgotten (one
small entry per conversation).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tier_router.conversations import Conversations, Turn
from tier_router.errors import APIError
from tier_router.request_line import Outcome, RequestLine
from tier_router.routing.conversation import identify
from tier_router.spend.pricing import usd
from tier_router.store.memory import MemoryStore

if TYPE_CHECKING:
    from tier_router.lifecycle import Exchange
    from tier_router.replay.pricing import Rate
    from tier_router.routing.engine import Decision, ModelRoute, Rules

T = TypeVar("T")

UNTIMED_AT = 1_000_000_000.0
"""The clock before the log's first `ts` (2001-09-09): any fixed instant far from 0, so that a
memory whose time the router does not know (`at` 0.0: a first turn re-decided) reads as cold,
as the router means it."""
MOST_SWITCHES_LISTED = 10
"""Conversations listed by their label under "most switches", per set."""


@dataclass(slots=True)
class Thread:
    """One conversation's state in one set: its last turn and its counts."""

    model: str
    at: float
    prompt: int
    turns: int = 1
    switches: int = 0


class Tally:
    """One set's conversations: turns, model switches, and the cache's savings."""

    def __init__(self, cache_ttl_s: float, idle_s: float) -> None:
        self.cache_ttl_s = cache_ttl_s
        self.idle_s = idle_s
        self.threads: OrderedDict[str, Thread] = OrderedDict()
        """Live conversations, least recently seen first."""
        self.finished = 0
        self.finished_multi = 0
        self.finished_max = 0
        self.most: list[tuple[int, int, str]] = []
        """A min-heap of the finished conversations with most (switches, turns, label)."""
        self.turns = 0
        self.switches = 0
        self.untimed = 0
        self.cached_tokens = 0
        self.without_cache = 0
        self.with_cache = 0
        self.priced = 0

    def turn(
        self,
        label: str,
        model: str,
        now: float,
        timed: bool,
        prompt: int,
        completion: int,
        rate: Rate | None,
        cached: int | None = None,
    ) -> Thread:
        """Count one turn of `label` on `model`. `cached`: the cached tokens the log says (the
        log's own set); None: the previous turn's prompt when warm on the same model."""
        self.turns += 1
        self.untimed += not timed
        if timed:
            self._forget(now)
        thread = self.threads.get(label)
        if thread is None:
            thread = self.threads[label] = Thread(model, now, prompt)
            warm = 0
        else:
            self.threads.move_to_end(label)
            thread.turns += 1
            warm = 0
            if thread.model != model:
                thread.switches += 1
                self.switches += 1
            elif abs(now - thread.at) <= self.cache_ttl_s:
                warm = min(thread.prompt, prompt)
            thread.model, thread.at, thread.prompt = model, now, prompt
        hit = warm if cached is None else min(max(cached, 0), prompt)
        self.cached_tokens += hit
        if rate is not None:
            plain = rate.cost(prompt, completion, None)
            self.priced += 1
            self.without_cache += plain
            self.with_cache += rate.cached_cost(prompt, completion, hit) if hit else plain
        return thread

    def _forget(self, now: float) -> None:
        """Fold the conversations idle for longer than `idle_s` into the totals."""
        threads = self.threads
        while threads:
            label, oldest = next(iter(threads.items()))
            if now - oldest.at <= self.idle_s:
                return
            threads.popitem(last=False)
            self.finished += 1
            self.finished_multi += oldest.turns > 1
            self.finished_max = max(self.finished_max, oldest.switches)
            if oldest.switches:
                entry = (oldest.switches, oldest.turns, label)
                if len(self.most) < MOST_SWITCHES_LISTED:
                    heapq.heappush(self.most, entry)
                elif entry > self.most[0]:
                    heapq.heapreplace(self.most, entry)

    def section(self) -> dict[str, Any]:
        """This set's part of the report's `conversations`."""
        live = self.threads
        multi = self.finished_multi + sum(1 for t in live.values() if t.turns > 1)
        most = self.most + [(t.switches, t.turns, label) for label, t in live.items() if t.switches]
        top = sorted(most, key=lambda e: (-e[0], -e[1], e[2]))[:MOST_SWITCHES_LISTED]
        saved = self.without_cache - self.with_cache
        return {
            "conversations": self.finished + len(live),
            "multi_turn": multi,
            "turns": self.turns,
            "untimed_turns": self.untimed,
            "switches": self.switches,
            "switches_per_multi_turn": round(self.switches / multi, 3) if multi else 0.0,
            "max_switches": max([self.finished_max, *(t.switches for t in live.values())]),
            "most_switches": [{"conversation": label, "switches": s, "turns": n} for s, n, label in top],
            "cache": {
                "cached_tokens": self.cached_tokens,
                "priced_turns": self.priced,
                "without_cache_micro_usd": self.without_cache,
                "with_cache_micro_usd": self.with_cache,
                "saved_micro_usd": saved,
                "saved_usd": usd(saved),
            },
        }


@dataclass(slots=True)
class Answered:
    """What the router's `Conversations.remember` reads of a request that was answered:
    by the placed decision's first model, nothing failing, escalating or downgraded."""

    turn: Turn
    decision: Decision
    route: ModelRoute
    usage: dict[str, int]
    line: RequestLine = field(default_factory=lambda: RequestLine("replay", outcome=Outcome.OK))


def run_now(step: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits (every `MemoryStore` primitive runs to completion
    without awaiting) to its end, here and now: replay reads its log without an event loop."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    raise RuntimeError("a replay conversation step waited for something")


class Sticky:
    """One rules set's conversations, each turn placed and remembered by the router's own
    `Conversations` (as one router process: its store a `MemoryStore` on the replay's clock)."""

    def __init__(self, rules: Rules, rates: Mapping[str, Rate]) -> None:
        self.now = UNTIMED_AT
        self.router = Conversations(MemoryStore(clock=self.clock), rules, clock=self.clock)
        self.policy = self.router.policy
        self.rates = rates
        self.tally = Tally(self.policy.cache_ttl_s, max(self.policy.ttl_s, self.policy.cache_ttl_s))

    def clock(self) -> float:
        return self.now

    def turn(
        self,
        decision: Decision,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        scope: str,
        at: tuple[float, bool],
        tokens: tuple[int, int],
    ) -> tuple[str, ModelRoute | None]:
        """The conversation's label and the model that answers this turn as the router would
        place it (counted; None: the decision has no model), then remembered as the router
        remembers it. `at`: (now, whether the line had its own `ts`); `tokens`: (prompt,
        completion). Raises `APIError` (400) for a malformed explicit id, as the router does."""
        self.now, timed = at
        placed, turn = run_now(self.router.place(decision, body, headers, scope))
        label = turn.conversation.label if turn is not None else identify(body, headers, scope).label
        if not placed.candidates:
            return label, None
        served = placed.candidates[0]
        prompt, completion = tokens
        self.tally.turn(label, served.name, self.now, timed, prompt, completion, self.rates.get(served.name))
        if turn is not None:
            answered = Answered(
                turn, placed, served, {"prompt_tokens": prompt, "completion_tokens": completion}
            )
            exchange = cast("Exchange", answered)
            run_now(self.router.remember(exchange))  # `note` + the store's write: in one step here
        return label, served


def logged_cached_tokens(obj: Mapping[str, Any], usage: Any) -> int | None:
    """The cached prompt tokens a line logs: its usage's `prompt_tokens_details.cached_tokens`,
    else the line's own `cached_tokens`; None when it logs neither."""
    if isinstance(usage, Mapping):
        details = usage.get("prompt_tokens_details")
        if isinstance(details, Mapping):
            value = details.get("cached_tokens")
            if type(value) is int and value >= 0:
                return value
    value = obj.get("cached_tokens")
    return value if type(value) is int and value >= 0 else None


def logged_label(obj: Mapping[str, Any]) -> str | None:
    """The conversation label of a router line (`conversation.conversation`), if logged."""
    placed = obj.get("conversation")
    if not isinstance(placed, Mapping):
        return None
    label = placed.get("conversation")
    return label if isinstance(label, str) and label else None


class Turns:
    """One replay's conversations: the rules' (`Sticky`), the `--against` rules' (another
    `Sticky`, its own memory) and the log's own (`Tally`); the clock is the lines' `ts`."""

    def __init__(
        self,
        rules: Rules,
        rates: Mapping[str, Rate],
        against: Rules | None = None,
        old_rates: Mapping[str, Rate] | None = None,
    ) -> None:
        self.new = Sticky(rules, rates)
        self.old = Sticky(against, old_rates or {}) if against is not None else None
        policy = self.new.policy
        self.logged = Tally(policy.cache_ttl_s, max(policy.ttl_s, policy.cache_ttl_s))
        self.rates = rates
        self.now = UNTIMED_AT
        self.unidentified = 0

    def clock(self, ts: float | None) -> tuple[float, bool]:
        """(now, whether the line had its own `ts`): a line without one is at the last `ts`."""
        if ts is None:
            return self.now, False
        self.now = ts
        return ts, True

    def request(
        self,
        obj: Mapping[str, Any],
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        ts: float | None,
        decisions: tuple[Decision, Decision | None],
        tokens: tuple[int, int],
        served: tuple[str, Any] | None,
    ) -> None:
        """A re-routed line: a turn for the rules (and the old rules: `decisions[1]`); with
        `served` (the model the log says answered, and its logged usage), one for the log's."""
        at = self.clock(ts)
        key = obj.get("key")
        scope = key if isinstance(key, str) else ""
        prompt, completion = tokens
        new, old = decisions
        try:
            label, _ = self.new.turn(new, body, headers, scope, at, tokens)
            if old is not None and self.old is not None:
                self.old.turn(old, body, headers, scope, at, tokens)
        except APIError:  # a malformed explicit id: the router refuses the request (400)
            self.unidentified += 1
            return
        if served is not None:
            model, usage = served
            cached = logged_cached_tokens(obj, usage) or 0
            self.logged.turn(label, model, *at, prompt, completion, self.rates.get(model), cached)

    def router(
        self, obj: Mapping[str, Any], ts: float | None, model: str, prompt: int, completion: int
    ) -> None:
        """A router line that was served: a turn of its logged conversation, as logged."""
        now, timed = self.clock(ts)
        label = logged_label(obj)
        if label is not None:
            cached = logged_cached_tokens(obj, None) or 0
            self.logged.turn(label, model, now, timed, prompt, completion, self.rates.get(model), cached)

    def section(self, rules: str, against: str | None) -> dict[str, Any] | None:
        """The report's `conversations` (None when no line was a turn of any)."""
        sets = [("rules", rules, self.new.tally)]
        if self.old is not None:
            sets.append(("against", against or "", self.old.tally))
        sets.append(("logged", "as logged", self.logged))
        if not any(tally.turns for _, _, tally in sets):
            return None
        policy = self.new.policy
        return {
            "ttl_s": policy.ttl_s,
            "cache_ttl_s": policy.cache_ttl_s,
            "unidentified": self.unidentified,
            "sets": [
                {"set": name, "source": source, **tally.section()}
                for name, source, tally in sets
                if tally.turns or name != "logged"
            ],
        }
