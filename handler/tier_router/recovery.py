"""Mid-stream recovery: a stream that fails after its content started is finished by the next
candidate, so the client still receives one complete answer.

When the stream fails (cut, stalled past `stall`, too many bad chunks, an error mid-way), the
remaining candidates are asked for the same request plus the text already sent, as a final
assistant message — a prefill: Anthropic continues it natively, and many OpenAI-compatible
servers do too. Only the continuation reaches the client. A candidate that rejects the
prefill (a 400) is asked again without it, and the new answer must begin with the text already
sent, which is skipped (`Continuation`, strict); if it does not, the stream ends with the error
event as before. Text is never repeated and never lost: a prefilled answer that starts over
from the beginning is recognised the same way and its repeat skipped.

What is recovered: text-only answers (`n == 1`, no tool calls, reasoning or refusal sent — a
tool call's arguments are never continued, so broken JSON never looks complete), at most
`routing.max_stream_recoveries` times per request (default `MAX_RECOVERIES`), each new
attempt within its candidate's `first_token`.
The log line says `recovered: "prefill" | "regenerate"`; usage and cost add both attempts
(the failed one priced from what it streamed, flagged `cost_estimated` when it sent no usage).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import httpx

from tier_router.admission import SpendControls
from tier_router.fallback import AllCandidatesFailed, Attempt, UpstreamClientError
from tier_router.forwarder import Forwarder
from tier_router.providers.base import UpstreamProtocolError
from tier_router.routing.engine import Decision
from tier_router.stream import Held, OpenedStream
from tier_router.stream_state import add_usage

MAX_RECOVERIES = 1
"""Times one request's stream may be taken over by the next candidate."""
RECOVERABLE = (UpstreamProtocolError, TimeoutError, httpx.HTTPError)
CHARS_PER_TOKEN = 4


class Continuation:
    """The next candidate's chunks, as the rest of the answer the client already has: in the
    first stream's id, without a second role, and without the text already sent when the new
    answer repeats it. `strict` (a regenerated answer): it must repeat it, else the stream fails.
    Not strict (a prefilled one): text that does not repeat it is the continuation, sent as is."""

    __slots__ = ("chunk_id", "done", "matched", "prefix", "strict", "trim")

    def __init__(self, prefix: str, chunk_id: Any, *, strict: bool) -> None:
        self.prefix = prefix
        self.chunk_id = chunk_id
        self.strict = strict
        self.matched = 0
        self.done = not prefix
        self.trim = not strict and prefix[-1:].isspace()
        """A prefill ending in whitespace (which Anthropic trims): the continuation's leading
        whitespace would double it."""

    def __call__(self, held: Held) -> Held:
        out: Held = []
        for chunk, _ in held:
            if self.chunk_id is not None and "id" in chunk:
                chunk["id"] = self.chunk_id
            choices = chunk.get("choices")
            if choices:
                choice = choices[0]
                delta = choice.get("delta") or {}
                delta.pop("role", None)  # the client had its role chunk
                text = delta.get("content")
                if not self.done and text and isinstance(text, str):
                    delta["content"] = self._match(text)
                if not self.done and choice.get("finish_reason"):
                    delta["content"] = (delta.get("content") or "") + self._give_up()
                if not delta.get("content"):
                    delta.pop("content", None)
                if not delta and not choice.get("finish_reason") and not chunk.get("usage"):
                    continue
            out.append((chunk, None))
        return out

    def _match(self, text: str) -> str:
        rest = self.prefix[self.matched :]
        n = min(len(text), len(rest))
        if text[:n] != rest[:n]:
            if self.trim and not self.matched:
                text = text.lstrip()
            return self._give_up() + text
        self.matched += n
        if self.matched < len(self.prefix):
            return ""  # still the text the client has: held until it is all matched
        self.done = True
        return text[n:]

    def _give_up(self) -> str:
        if self.strict:
            raise UpstreamProtocolError("the next candidate's answer does not begin with the text sent")
        self.done = True
        return self.prefix[: self.matched]  # held back, and the continuation after all


@dataclass(slots=True)
class Resume:
    """What a recovery needs from the request: where to send it, and what was asked."""

    forwarder: Forwarder
    spend: SpendControls
    decision: Decision
    body: dict[str, Any]
    include_usage: bool
    limit: int = MAX_RECOVERIES
    """`routing.max_stream_recoveries`."""

    def can_recover(self, opened: OpenedStream) -> bool:
        state = opened.state
        return (
            state.recoveries < self.limit
            and state.choices == 1
            and not state.not_text
            and bool(state.parts)
            and not state.finished
        )

    async def take_over(self, opened: OpenedStream) -> tuple[OpenedStream | None, list[Attempt]]:
        """The next candidates' stream, continuing `opened`'s answer (None if none could), and
        the attempts it took."""
        state = opened.state
        state.recoveries += 1
        names = [route.name for route in self.decision.candidates]
        rest = (
            self.decision.candidates[names.index(opened.route.name) + 1 :]
            if opened.route.name in names
            else ()
        )
        if not rest:
            return None, []
        decision = dataclasses.replace(self.decision, candidates=tuple(rest))
        text = state.text
        prefilled = {
            **self.body,
            "messages": [*self.body["messages"], {"role": "assistant", "content": text}],
        }
        attempts: list[Attempt] = []
        try:
            taken = await self.forwarder.open_stream(decision, prefilled, self.include_usage)
            how = "prefill"
        except UpstreamClientError as exc:  # the prefill was refused: answer anew
            attempts += exc.attempts
            try:
                taken = await self.forwarder.open_stream(decision, self.body, self.include_usage)
            except (AllCandidatesFailed, UpstreamClientError) as again:
                return None, attempts + again.attempts
            how = "regenerate"
        except AllCandidatesFailed as exc:
            return None, exc.attempts
        attempts += taken.attempts
        first_id = next((chunk.get("id") for chunk, _ in taken.held if "id" in chunk), None)
        taken.rewrite = Continuation(text, state.chunk_id or first_id, strict=how == "regenerate")
        taken.state = state
        state.recovered = how
        taken.earlier_bad_chunks = opened.bad_chunks
        usage, cost, estimated = used_so_far(opened, self.decision, self.spend)
        taken.carried_usage = usage
        taken.carried_cost = opened.carried_cost if cost is None else cost
        taken.carried_estimated = estimated
        return taken, attempts


def used_so_far(
    opened: OpenedStream, decision: Decision, spend: SpendControls
) -> tuple[dict[str, Any], int | None, bool]:
    """What a stream that stops here used, with the streams it took over from: the usage, its
    cost (None when its model cannot be priced: only the earlier streams' then), and whether
    either was estimated (`spent`) rather than the provider's."""
    used = spent(opened, decision)
    price = spend.price(opened.route, used)
    cost = None if price is None else opened.carried_cost + price
    estimated = opened.carried_estimated or not (opened.decoder.usage or {}).get("completion_tokens")
    return add_usage(opened.carried_usage, used), cost, estimated


def spent(opened: OpenedStream, decision: Decision) -> dict[str, Any]:
    """What a failed stream used: its provider's usage when it sent one, else the prompt's
    estimate and what was streamed (characters / 4)."""
    usage = opened.decoder.usage or {}
    prompt = usage.get("prompt_tokens") or decision.features.conversation_tokens
    completion = max(usage.get("completion_tokens") or 0, -(-opened.streamed_chars // CHARS_PER_TOKEN))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
