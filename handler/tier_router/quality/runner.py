"""Sampled judging: one judgement per sampled request, after its client has the answer.

    judging = Judging.of(rules, store, forwarder, spend, access_log, drainer)   # None: off
    exchange.sampled = judging.pick(decision, body)    # at admission (endpoints.chat)
    judging.submit(exchange)                           # once logged (QualityLoop.finished)
    await judging.run(sample)                          # one whole judgement

`submit` never raises and never waits: it builds the `Sample` and hands it to `dispatch` (on
Lambda, an asynchronous invocation of the same function) or runs it in a background task of
the lifecycle's `Drainer` (awaited at shutdown), at most `quality.max_pending` at once — the
rest are skipped, counted `judge_skipped`.

`run` (a failure anywhere is counted `judge_failed` and logged, nothing else):
1. reserves the worst case of its three calls — the reference tier's answer and the judge in
   both orders — on the judging's own daily budget (`quality.budget_usd`, the store item
   `judge:<day>`, the hard cap's holds and settles: `spend.budget.BudgetGuard`) and, when the
   router has a global hard cap (`budgets.daily_usd`), on that cap too: refused = skipped;
2. asks the reference tier (a fresh decision for it; not streamed, one choice);
3. asks the judge model in both orders, at once (`judge.prompts`), and combines them;
4. settles both reservations with what the calls cost, adds the verdict to the day's
   `quality:<day>` item (one `store.add`), keeps the prompt when `quality.keep_prompts`, and
   writes the judgement line (with its EMF metrics `Judged` / `JudgedLoss` by tier).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tier_router.body import validation_error
from tier_router.errors import RouterError
from tier_router.fallback import AllCandidatesFailed, UpstreamClientError
from tier_router.quality import judge
from tier_router.quality.counts import item_expiry, item_key, verdict_deltas
from tier_router.quality.sample import Sample, prompt_key
from tier_router.quality.sampling import Sampled, Sampling
from tier_router.quality.spent import Spent
from tier_router.request_line import Outcome
from tier_router.routing.engine import Decision, Rules
from tier_router.routing.request import parse_chat
from tier_router.spend.budget import BudgetGuard, CapReached, Reservation
from tier_router.spend.counters import DAY_S, day_key
from tier_router.spend.reservation import Unbounded, bound
from tier_router.telemetry import AccessLog, directive, emf_block

if TYPE_CHECKING:
    from tier_router.admission import SpendControls
    from tier_router.forwarder import Forwarder
    from tier_router.lifecycle import Drainer, Exchange
    from tier_router.store.base import Store

log = logging.getLogger("tier_router.quality")
MAX_KEPT_BODY_BYTES = 300 * 1024
"""Request bodies larger than this are not kept (`quality.keep_prompts`)."""
MAX_ERROR_CHARS = 300
BUDGET_PREFIX = "judge:"
Dispatch = Callable[[Sample], Awaitable[None]]
STOP_S = 5.0
"""At shutdown, how long the judgements cancelled by `stop` get to settle, count and log."""
CANCELLED = "cancelled: the process stopped before the judgement ended (its reservations charged in full)"


class Skipped(RouterError):
    """A judgement not started: its reason goes on the line as `skipped`."""


class Judging:
    def __init__(
        self,
        rules: Rules,
        sampling: Sampling,
        store: Store,
        forwarder: Forwarder,
        spend: SpendControls,
        access_log: AccessLog,
        drainer: Drainer,
        *,
        dispatch: Dispatch | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        spec = rules.spec.quality
        assert spec.judge is not None
        self.rules, self.sampling, self.store = rules, sampling, store
        self.forwarder, self.spend, self.access_log = forwarder, spend, access_log
        self.drainer, self.dispatch, self.clock = drainer, dispatch, clock
        self.spec, self.judge = spec, spec.judge
        from tier_router.schema.spend import BudgetConfig, PacingConfig  # only when judging is on

        budgets = rules.spec.budgets
        self.day_start_hour = budgets.day_start_hour
        self.guard = BudgetGuard(
            store,
            BudgetConfig(
                daily_usd=spec.budget_usd,
                pacing=PacingConfig(enabled=False),
                day_start_hour=budgets.day_start_hour,
                retention_days=spec.retention_days,
                reservation_margin=budgets.reservation_margin,
                default_max_output_tokens=budgets.default_max_output_tokens,
                image_tokens=budgets.image_tokens,
                reservation_ttl_s=budgets.reservation_ttl_s,
                on_store_error="reject",
            ),
            clock=clock,
            key_prefix=BUDGET_PREFIX,
        )
        self.pending = 0
        self.running: set[asyncio.Task[None]] = set()
        """The judgements in flight on this process (`stop` cancels what is left at shutdown)."""

    @classmethod
    def of(
        cls,
        rules: Rules,
        store: Store,
        forwarder: Forwarder,
        spend: SpendControls,
        access_log: AccessLog,
        drainer: Drainer,
        *,
        dispatch: Dispatch | None = None,
    ) -> Judging | None:
        """Judging as the rules file configures it; None when nothing is ever sampled."""
        sampling = Sampling.of(rules.spec)
        if sampling is None:
            return None
        return cls(rules, sampling, store, forwarder, spend, access_log, drainer, dispatch=dispatch)

    # -- in the request ------------------------------------------------------------------------

    def pick(self, decision: Decision, body: dict[str, Any]) -> Sampled | None:
        """At admission (not for cache hits): whether this request is sampled."""
        reference = self.sampling.pick(decision)
        return None if reference is None else Sampled(reference, body)

    def submit(self, exchange: Exchange) -> None:
        """A request is logged: judge it if it was sampled and answered. Never raises or waits."""
        try:
            sample = sample_of(exchange)
            if sample is None:
                return
            if self.pending >= self.spec.max_pending:
                self.drainer.start(self._skip(sample, "busy: quality.max_pending judgements in flight"))
                return
            self.pending += 1
            task = self.drainer.start(self._go(sample))
            self.running.add(task)
            task.add_done_callback(self.running.discard)
        except Exception:
            log.exception("judging could not take request %s", exchange.request_id)

    async def _go(self, sample: Sample) -> None:
        try:
            if self.dispatch is None:
                await self.run(sample)
                return
            try:
                await self.dispatch(sample)
            except Exception as exc:  # not judged: counted and logged as a failed judgement
                log.warning("dispatching the judgement of %s failed: %s", sample.request_id, exc)
                record = self._record(sample)
                record["error"] = self._describe(exc, "dispatch")
                await self._count(day_key(self.clock(), self.day_start_hour), {"judge_failed": 1}, record)
                self._log(record)
        finally:
            self.pending -= 1

    async def _skip(self, sample: Sample, why: str) -> None:
        record = self._record(sample)
        record["skipped"] = why
        await self._count(day_key(self.clock(), self.day_start_hour), {"judge_skipped": 1}, record)
        self._log(record)

    # -- one judgement ---------------------------------------------------------------------

    async def run(self, sample: Sample) -> None:
        """One whole judgement (see the module docstring). Never raises."""
        record = self._record(sample)
        spent = Spent()
        day = day_key(self.clock(), self.day_start_hour)
        try:
            day = await self._judge(sample, record, spent)
        except Skipped as exc:
            record["skipped"] = str(exc)
            await self._count(day, {"judge_skipped": 1}, record)
        except Exception as exc:
            record["error"] = self._describe(exc)
            deltas = {"judge_failed": 1}
            if spent.cost:
                deltas["judge_cost"] = spent.cost
            await self._count(day, deltas, record)
        except asyncio.CancelledError:  # `stop`: the process is shutting down
            record["error"] = CANCELLED
            await self._count(day, {"judge_failed": 1, "judge_cost": spent.cost}, record)
            self._log(self._costs(record, spent))
            raise
        self._log(self._costs(record, spent))

    async def stop(self, within_s: float = STOP_S) -> None:
        """At shutdown, after the drain: cancel the judgements still in flight (a reference or
        judge that hangs), and wait up to `within_s` for each to settle its reservations,
        count itself failed and write its line."""
        tasks = set(self.running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=within_s)

    @staticmethod
    def _costs(record: dict[str, Any], spent: Spent) -> dict[str, Any]:
        record["cost_micro_usd"] = {"reference": spent.reference, "judge": spent.judge}
        record["tokens"] = spent.tokens
        return record

    async def _judge(self, sample: Sample, record: dict[str, Any], spent: Spent) -> str:
        """Returns the budget day the judgement is counted on."""
        self._check(sample)
        body = reference_body(sample.body, sample.reference)
        reference = self._decide(body)
        worst_judge = self._body(judge.worst_prompt(sample.body, sample.answer, self.judge.rubric))
        judge_decision = self._decide(worst_judge)
        worst = self._worst(reference, body, judge_decision, worst_judge)
        own = await self.guard.reserve(None, worst, holder=sample.request_id)
        if isinstance(own, CapReached):
            raise Skipped(f"budget: quality.budget_usd (${self.spec.budget_usd}) is spent for today")
        router_guard = self.spend.guard
        capped = await self._hard_cap(router_guard, sample, worst, own)
        try:
            answer = await self._ask(reference, body, "reference")
            spent.tokens["reference"] = _usage(answer.data)
            spent.reference = self.spend.price(answer.route, spent.tokens["reference"])
            record["reference_model"] = answer.route.name
            reference_text = judge.answer_text(answer.data)
            if not reference_text.strip():
                raise ValueError("reference: the reference tier's answer has no text")
            orders = judge.prompts(sample.body, sample.answer, reference_text, self.judge.rubric)
            replies = await asyncio.gather(
                *(self._ask(judge_decision, self._body(m), "judge") for m in orders), return_exceptions=True
            )
            for reply in replies:
                if not isinstance(reply, BaseException):
                    spent.add_judge(self.spend.price(reply.route, _usage(reply.data)), _usage(reply.data))
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply
        except asyncio.CancelledError:
            spent.cut()
            raise
        finally:
            await self.guard.settle(own, spent.total)
            spent.charged = own.actual
            if capped is not None and router_guard is not None:
                await router_guard.settle(capped, spent.total)
        texts = [judge.answer_text(reply.data) for reply in replies]  # type: ignore[union-attr]
        readings = [judge.parse(texts[0], "A"), judge.parse(texts[1], "B")]
        record["orders"] = [r.as_dict() for r in readings if r is not None]
        if readings[0] is None or readings[1] is None:
            raise ValueError("judge: its answer holds no JSON verdict with scores a and b (0-10)")
        result = judge.combine(readings[0], readings[1])
        record["verdict"] = result.verdict.value
        record["scores"] = {sample.tier: result.score, sample.reference: result.reference_score}
        saved = None if spent.reference is None or sample.cost is None else spent.reference - sample.cost
        deltas = verdict_deltas(sample.dims(), result.verdict, result.score, result.reference_score, saved)
        if spent.cost:
            deltas["judge_cost"] = spent.cost
        await self._count(own.day, deltas, record)
        if self.spec.keep_prompts:
            record["kept_prompt"] = await self._keep(sample)
        return own.day

    def _body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        return judge.judge_body(self.judge.model, messages, self.judge.max_tokens)

    def _check(self, sample: Sample) -> None:
        """A sample comes from an event on Lambda (data): its tier and reference must be two
        tiers of this rules file (not a model, not the same tier), or nothing is called."""
        tiers = self.rules.tiers
        if sample.tier not in tiers or sample.reference not in tiers or sample.tier == sample.reference:
            raise ValueError(
                f"sample: tier {sample.tier[:64]!r} and reference {sample.reference[:64]!r} are not"
                " two different tiers of the rules file"
            )

    def _decide(self, body: dict[str, Any]) -> Decision:
        try:
            return self.rules.decide(parse_chat(body))
        except validation_error() as exc:  # its text would quote the prompt: name the field only
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(
                f"sample.body is not a chat-completions request ({where}: {first['msg']})"
            ) from None

    def _worst(
        self, reference: Decision, body: dict[str, Any], judge_decision: Decision, worst_judge: dict[str, Any]
    ) -> int:
        """The three calls' worst case: the reference's answer and two judge calls whose
        prompts hold the longest reference answer the judge is shown."""
        image_tokens = self.guard.config.image_tokens
        try:
            return self.guard.reservation(reference.candidates, bound(body, image_tokens)) + 2 * (
                self.guard.reservation(judge_decision.candidates, bound(worst_judge, image_tokens))
            )
        except Unbounded as exc:
            raise Skipped(f"unbounded: {exc}") from None

    async def _hard_cap(
        self, guard: BudgetGuard | None, sample: Sample, worst: int, own: Reservation
    ) -> Reservation | None:
        """The router's global hard cap bounds judging too: hold the worst case on it."""
        if guard is None or not guard.capped(None):
            return None
        try:
            held = await guard.reserve(None, worst, holder=f"judge-{sample.request_id}")
        except BaseException:
            await self.guard.settle(own, 0)
            raise
        if isinstance(held, CapReached):
            await self.guard.settle(own, 0)
            raise Skipped("budget: the router's daily hard cap (budgets.daily_usd) is reached")
        return held

    async def _ask(self, decision: Decision, body: dict[str, Any], stage: str) -> Any:
        try:
            return await self.forwarder.complete(decision, body)
        except AllCandidatesFailed as exc:
            outcomes = ", ".join(f"{a.model}: {a.outcome}" for a in exc.attempts) or "none tried"
            raise RuntimeError(f"{stage}: every candidate failed ({outcomes})") from None
        except UpstreamClientError as exc:
            raise RuntimeError(f"{stage}: refused ({exc.status}): {exc.message}") from None

    async def _keep(self, sample: Sample) -> bool:
        text = json.dumps(sample.body, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode()) > MAX_KEPT_BODY_BYTES:
            return False
        expires = self.clock() + self.spec.retention_days * DAY_S
        try:
            await self.store.put(
                prompt_key(sample.request_id), {"body": text, "tier": sample.tier}, expires_at=expires
            )
        except Exception as exc:
            log.warning("keeping the prompt of %s failed: %s", sample.request_id, exc)
            return False
        return True

    async def _count(self, day: str, deltas: dict[str, int], record: dict[str, Any]) -> None:
        deltas = {name: value for name, value in deltas.items() if value}
        try:
            await self.store.add(
                item_key(day),
                deltas,
                expires_at=item_expiry(day, self.spec.retention_days, self.day_start_hour),
            )
        except Exception as exc:
            log.warning("counting the judgement of %s failed: %s", record["request_id"], exc)
            record["error"] = record["error"] or self._describe(exc, "count")

    def _describe(self, exc: BaseException, stage: str | None = None) -> str:
        text = str(exc) or exc.__class__.__name__
        if stage:
            text = f"{stage}: {text}"
        return self.forwarder.redactor.text(text)[:MAX_ERROR_CHARS]

    def _record(self, sample: Sample) -> dict[str, Any]:
        return {
            "type": "judgement",
            "request_id": sample.request_id,
            "tier": sample.tier,
            "reference": sample.reference,
            "rule": sample.rule,
            "model": sample.model,
            "arm": sample.arm,
            "reference_model": None,
            "judge_model": self.judge.model,
            "verdict": None,
            "scores": {},
            "orders": [],
            "cost_micro_usd": {"reference": None, "judge": None},
            "tokens": {"reference": None, "judge": None},
            "features": sample.features,
            "kept_prompt": False,
            "error": None,
            "skipped": None,
        }

    def _log(self, record: dict[str, Any]) -> None:
        if self.access_log.emf:
            add_emf(record, self.clock())
        self.access_log.write(record)


def add_emf(record: dict[str, Any], now: float) -> None:
    """`Judged` and `JudgedLoss` by the judged tier (the Average of JudgedLoss is its loss
    rate); a judgement without a verdict counts `JudgeFailed` or `JudgeSkipped` instead."""
    if record["verdict"] is not None:
        record["Judged"] = 1
        record["JudgedLoss"] = 1 if record["verdict"] == "loss" else 0
        metrics = ["Judged", "JudgedLoss"]
    else:
        name = "JudgeSkipped" if record["skipped"] else "JudgeFailed"
        record[name] = 1
        metrics = [name]
    record["_aws"] = emf_block(now, directive([["tier"]], metrics))


def reference_body(body: dict[str, Any], reference: str) -> dict[str, Any]:
    """The client's request for the reference tier: not streamed, one choice."""
    out = {k: v for k, v in body.items() if k not in ("stream", "stream_options", "n")}
    out["model"] = reference
    return out


def sample_of(exchange: Exchange) -> Sample | None:
    """The sample of a finished exchange, if it was sampled and is to be judged: answered in
    full, with text in its first choice, by a tier other than its reference."""
    sampled, decision = exchange.sampled, exchange.decision
    if sampled is None or decision is None or exchange.line.outcome is not Outcome.OK:
        return None
    tier = decision.tier  # the tier that answered (a cascade may have escalated)
    if tier is None or tier == sampled.reference:
        return None
    answer = sampled.answer if exchange.stream is None else exchange.stream.state.text
    if not answer or not answer.strip():
        return None
    line = exchange.line
    return Sample(
        request_id=exchange.request_id,
        body=sampled.body,
        answer=judge.clip(answer),
        tier=tier,
        reference=sampled.reference,
        rule=line.rule,
        model=exchange.route.name if exchange.route is not None else None,
        arm=line.arm_label,
        key=line.key,
        cost=None if line.cost_estimated else exchange.cost,  # no saving counted against a guess
        features=decision.features.as_dict(),
    )


def _usage(data: dict[str, Any]) -> dict[str, Any] | None:
    usage = data.get("usage")
    return usage if isinstance(usage, dict) else None
