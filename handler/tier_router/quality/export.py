"""Labels from the router's log: what `tier-router labels LOG... [--store URL]` writes.

The log carries, besides one line per request, one judgement line per judged sample and one
feedback line per `POST /v1/feedback` (docs/quality-loop.md). They become labels
(`quality.labels`), one line per request:

    {"request": <the chat-completions body>, "scores": {"<tier>": 0..1, ...}}
    {"features": {<the request line's features>}, "scores": {...}}      (prompt not kept)

- scores: the judge's score of every tier a judgement compared (the served tier and the
  reference); a feedback score for the served tier overrides the judge's score of that tier
  (a person who read the answer outranks the judge). Of several judgements or feedbacks of
  one request, the last one in the log counts.
- request: the kept prompt (`prompt:<request_id>`, `quality.keep_prompts: true`), read from
  the store in batches of 100 keys (one `get_many` each) when a store is given; else
  features: the judgement line's, or for a request with feedback only, its request line's
  (a second pass over the files: `-`, stdin, is read once).
- Other lines (requests, events, anything not JSON) are not labels and are skipped; a
  judgement or feedback line with a wrong field is counted as malformed and named.

Memory: one small entry per judged or rated request (a sample of the traffic), never per
request line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tier_router.quality.labels import Label, check_score
from tier_router.quality.sample import prompt_key
from tier_router.replay.log import open_log
from tier_router.store.base import Store

BATCH = 100
"""Keys per `get_many` (DynamoDB's BatchGetItem limit)."""
MAX_PROBLEMS = 5
"""Malformed lines named in the summary (the rest are counted)."""
STDIN = "-"


@dataclass(slots=True)
class Rated:
    """What the log says about one request."""

    judge: dict[str, float] = field(default_factory=dict)
    feedback: dict[str, float] = field(default_factory=dict)
    features: dict[str, Any] | None = None

    def scores(self) -> dict[str, float]:
        return {**self.judge, **self.feedback}  # feedback wins for its tier


@dataclass(slots=True)
class ExportStats:
    lines: int = 0
    judgements: int = 0
    feedback: int = 0
    malformed: int = 0
    problems: list[str] = field(default_factory=list)
    labels: int = 0
    with_request: int = 0
    with_features: int = 0
    no_scores: int = 0
    no_request_or_features: int = 0
    bad_prompts: int = 0

    def problem(self, where: str, reason: str) -> None:
        self.malformed += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{where}: {reason}")

    def summary(self, out: str) -> str:
        """For stderr: what was read, written and skipped."""
        text = [
            f"labels: {self.labels} written to {out} ({self.with_request} with the request, "
            f"{self.with_features} with features only)",
            f"read {self.lines} lines: {self.judgements} judgements, {self.feedback} feedback",
        ]
        if self.no_scores:
            text.append(f"skipped {self.no_scores} requests without a score (judgements that failed)")
        if self.no_request_or_features:
            text.append(
                f"skipped {self.no_request_or_features} requests with neither a kept prompt nor features"
            )
        if self.bad_prompts:
            text.append(f"{self.bad_prompts} kept prompts were not a chat-completions body (features used)")
        if self.malformed:
            text.append(f"{self.malformed} malformed judgement or feedback lines, skipped:")
            text += [f"  {problem}" for problem in self.problems]
        return "\n".join(text)


class LabelExport:
    """Collects the judgement and feedback lines of one or more logs (in order), then builds
    the labels."""

    def __init__(self) -> None:
        self.rated: dict[str, Rated] = {}
        self.stats = ExportStats()

    def read(self, log: str | Path) -> None:
        """Every judgement and feedback line of `log` (a path, `.gz`, or `-` for stdin)."""
        for where, obj in _objects(log, self.stats, (b"judgement", b"feedback")):
            if obj is None:  # a line of ours cut short (a full disk, a truncated copy)
                self.stats.problem(where, "not JSON")
                continue
            kind = obj.get("type")
            try:
                if kind == "judgement":
                    self._judgement(obj)
                elif kind == "feedback":
                    self._feedback(obj)
            except ValueError as exc:
                self.stats.problem(where, f"{kind} {exc}")

    def missing_features(self) -> set[str]:
        """Requests rated by feedback only: their features are on their request lines."""
        return {rid for rid, rated in self.rated.items() if rated.features is None}

    def read_features(self, log: str | Path, wanted: set[str]) -> None:
        """A second pass: the features of the request lines of `wanted` requests."""
        if not wanted or str(log) == STDIN:
            return
        counted = ExportStats()  # the lines were counted by the first pass
        for _, obj in _objects(log, counted, (b'"request"',)):
            if obj is None:
                continue
            rid = obj.get("request_id")
            if obj.get("event") != "request" or rid not in wanted:
                continue
            try:
                features = _features(obj.get("features"))
            except ValueError:
                continue
            if features is not None:
                self.rated[rid].features = features

    def request_ids(self) -> list[str]:
        return list(self.rated)

    def labels(self, prompts: dict[str, dict[str, Any]]) -> Iterator[Label]:
        """One label per rated request (in the order the log first named them); `prompts` are
        the kept request bodies by request id."""
        for rid, rated in self.rated.items():
            scores = rated.scores()
            if not scores:
                self.stats.no_scores += 1
                continue
            request = prompts.get(rid)
            if request is not None:
                self.stats.with_request += 1
            elif rated.features is not None:
                self.stats.with_features += 1
            else:
                self.stats.no_request_or_features += 1
                continue
            self.stats.labels += 1
            yield Label(scores, request, None if request is not None else rated.features)

    def _judgement(self, obj: dict[str, Any]) -> None:
        rid = _text(obj, "request_id")
        raw = obj.get("scores")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ValueError("scores: expected an object of tier -> score")
        scores = {str(tier): check_score(f"scores.{tier}", value) for tier, value in raw.items()}
        features = _features(obj.get("features"))
        self.stats.judgements += 1
        rated = self.rated.setdefault(rid, Rated())
        if scores:  # a failed or skipped judgement scores nothing: an earlier one stands
            rated.judge = scores
        if features is not None:
            rated.features = features

    def _feedback(self, obj: dict[str, Any]) -> None:
        rid = _text(obj, "request_id")
        tier = _text(obj, "tier")
        score = check_score("score", obj.get("score"))
        self.stats.feedback += 1
        self.rated.setdefault(rid, Rated()).feedback[tier] = score


async def read_prompts(store: Store, request_ids: Iterable[str], stats: ExportStats) -> dict[str, dict]:
    """The kept request bodies of `request_ids` (`prompt:<id>` items), BATCH keys per read."""
    ids = list(request_ids)
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        items = await store.get_many([prompt_key(rid) for rid in batch])
        for rid in batch:
            item = items.get(prompt_key(rid))
            if item is None:
                continue
            body = _body(item.get("body"))
            if body is None:
                stats.bad_prompts += 1
            else:
                found[rid] = body
    return found


def write_labels(labels: Iterable[Label], out: IO[str]) -> int:
    written = 0
    for label in labels:
        out.write(label.as_json() + "\n")
        written += 1
    return written


def _objects(
    log: str | Path, stats: ExportStats, needles: tuple[bytes, ...]
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(file:line, object) of the JSON-object lines holding one of `needles` (a byte search
    first: most lines of a request log are not what we look for); None for a line that has a
    `"type"` and a needle but is not JSON (one of ours, broken)."""
    stream, _ = open_log(log)
    name = "<stdin>" if str(log) == STDIN else str(log)
    try:
        for number, raw in enumerate(stream, 1):
            stats.lines += 1
            if not any(needle in raw for needle in needles):
                continue
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):  # not ours (CloudWatch's START/END), ours cut short,
                # not UTF-8, or nested past the parser's depth: a hostile log must not end the export
                if b'"type"' in raw:
                    yield f"{name}:{number}", None
                continue
            if isinstance(obj, dict):
                yield f"{name}:{number}", obj
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: expected a non-empty string")
    return value


def _features(value: object) -> dict[str, Any] | None:
    """A line's features: an object that is strict JSON (Python's parser reads NaN and
    Infinity, which a label file must not carry: other readers refuse them)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("features: expected an object")
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        raise ValueError("features: NaN or Infinity is not JSON") from None
    return value


def _body(text: object) -> dict[str, Any] | None:
    """A kept prompt's body (stored as a JSON string): a chat-completions body, else None."""
    if not isinstance(text, str):
        return None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        return body
    return None
