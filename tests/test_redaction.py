"""`tier_router.redaction`: what the scrubbers promise, piece by piece (the end-to-end check,
a real router in front of an echoing provider, is tests/resilience/test_secret_echo.py)."""

from __future__ import annotations

import itertools
import json
import logging
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from tier_router.redaction import HOLD_MIN, REDACTED, Redactor, redact_logs
from tier_router.stream import frame

KEY = "sk-proj-REDACTME-0123456789abcdef"


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [
        {"index": index, "delta": delta, "finish_reason": finish}
    ]}  # fmt: skip


def sent_text(frames: list[bytes], field: str = "content") -> str:
    """The text a client reassembles from the frames."""
    text = []
    for line in b"".join(frames).decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                delta = choice["delta"]
                if field == "arguments":
                    text += [c["function"]["arguments"] for c in delta.get("tool_calls") or ()]
                else:
                    text.append(delta.get(field) or "")
    return "".join(text)


def stream_through(redactor: Redactor, chunks: list[dict[str, Any]], *, final: bool = True) -> list[bytes]:
    """Each chunk as its own upstream read (the worst case: every delta sent on its own)."""
    scrubber = redactor.stream()
    out = [redactor.bytes(frame([(c, json.dumps(c))], lambda usage: None, scrubber)[0]) for c in chunks]
    out.append(frame([], lambda usage: None, scrubber, final=final)[0])
    return out


def test_a_key_echoed_a_few_characters_per_delta_never_reaches_the_client() -> None:
    redactor = Redactor([KEY])
    pieces = ["Your key is ", *(KEY[i : i + 3] for i in range(0, len(KEY), 3)), ", keep it safe."]
    frames = stream_through(redactor, [*(chunk({"content": p}) for p in pieces), chunk({}, "stop")])
    assert sent_text(frames) == f"Your key is {REDACTED}, keep it safe."
    assert not any(KEY[-6:].encode() in f for f in frames)


def test_text_that_only_looks_like_the_start_of_a_key_is_delayed_never_lost() -> None:
    redactor = Redactor([KEY])
    pieces = ["Dogs", " and cats", " like sk", "-proj", "ects", " and s"]  # ends held back, no finish
    frames = stream_through(redactor, [chunk({"content": p}) for p in pieces])
    assert sent_text(frames) == "".join(pieces)


def test_tool_call_arguments_split_across_deltas_are_scrubbed() -> None:
    redactor = Redactor([KEY])
    args = json.dumps({"api_key": KEY})
    cut = args.index(KEY) + 5
    calls = [
        chunk({"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f", "arguments": args[:cut]}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[cut:]}}]}),
        chunk({}, "tool_calls"),
    ]
    assert sent_text(stream_through(redactor, calls), "arguments") == json.dumps({"api_key": REDACTED})


@given(
    text=st.text(alphabet="ab-", max_size=60),
    at=st.lists(st.integers(0, 60), max_size=3),
    cuts=st.lists(st.integers(1, 120), max_size=12),
)
def test_streamed_text_is_the_whole_text_redacted_wherever_it_is_cut(
    text: str, at: list[int], cuts: list[int]
) -> None:
    """A key that overlaps itself (`abab…`), in text made of its own characters, cut into
    deltas anywhere: the client never gets the key, and what it reassembles is the whole text
    with each key replaced — no lost or extra character — except that a key cut within its
    first HOLD_MIN - 1 characters shows those (`ab[redacted]`; for a real key, "sk")."""
    key = "abab-aab"
    for i in sorted(at, reverse=True):
        text = text[:i] + key + text[i:]
    starts = {m.start() for m in re.finditer(f"(?={re.escape(key)})", text)}  # overlapping too
    early = {b + k for b in starts for k in range(1, HOLD_MIN)}  # cuts that show part of a key
    for only_late in (False, True):
        bounds = sorted(
            {0, len(text), *(c for c in cuts if c < len(text) and not (only_late and c in early))}
        )
        pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
        chunks = [chunk({"content": p}) for p in pieces] + [chunk({}, "stop")]
        got, expected = (
            sent_text(stream_through(Redactor([key]), chunks)),
            re.sub(re.escape(key), REDACTED, text),
        )
        assert key not in got
        if only_late:
            assert got == expected
        else:
            assert len(expected) <= len(got) <= len(expected) + (HOLD_MIN - 1) * expected.count(REDACTED)


def test_whole_bodies_and_headers_fast_path_and_escaped_spellings() -> None:
    quoted = 'key-with"quote\\1'
    redactor = Redactor([KEY, quoted])
    body = b'{"a":"x"}'
    assert redactor.bytes(body) is body  # nothing found: the same object, no copy
    assert redactor.bytes(f'{{"k":"{KEY}","q":{json.dumps(quoted)}}}'.encode()) == (
        b'{"k":"[redacted]","q":"[redacted]"}'
    )
    assert redactor.text(f"Bearer {KEY}") == "Bearer [redacted]"


def test_short_secrets_are_not_redacted_and_keys_rotate_in() -> None:
    redactor = Redactor(["", None, "abc1234"])  # under MIN_SECRET_CHARS: would mangle ordinary text
    assert not redactor
    assert redactor.stream() is None
    assert redactor.text("abc1234 stays") == "abc1234 stays"
    redactor.add([KEY])
    redactor.add(["sk-rotated-in-9876543210"])
    assert redactor.text(f"{KEY} sk-rotated-in-9876543210") == f"{REDACTED} {REDACTED}"  # old and new


def test_every_log_record_is_scrubbed_whatever_the_logger(caplog) -> None:
    redactor = Redactor([KEY])
    redact_logs(redactor)
    redact_logs(redactor)  # installed once
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpcore.http11").debug(
        "return_value=%r", [(b"www-authenticate", f"Bearer {KEY}".encode())]
    )
    try:
        raise ValueError(f"provider said: {KEY}")
    except ValueError:
        logging.getLogger("some.library").exception("failed")
    logging.getLogger("tests.redaction.plain").info("%s %s", "plain", "args")
    text = caplog.text
    assert KEY not in text
    assert KEY[-10:] not in text
    assert "Bearer [redacted]" in text
    assert "provider said: [redacted]" in text
    (plain,) = [r for r in caplog.records if r.name == "tests.redaction.plain"]
    assert plain.args == ("plain", "args")  # a record without a secret is left as it was


def test_an_anthropic_stream_is_scrubbed_after_translation() -> None:
    from tier_router.providers.anthropic_adapter import AnthropicStreamDecoder

    decoder = AnthropicStreamDecoder(include_usage=False)
    events = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "model": "claude", "usage": {"input_tokens": 5, "output_tokens": 0}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        *(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": KEY[i : i + 5]}})
          for i in range(0, len(KEY), 5)),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 9}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    chunks = [c for name, data in events for c in decoder.feed(name, json.dumps(data))]
    redactor = Redactor([KEY])
    scrubber = redactor.stream()
    frames = [redactor.bytes(frame([(c, None)], lambda usage: None, scrubber)[0]) for c in chunks]
    assert sent_text(frames) == REDACTED
    assert not any(KEY[-8:].encode() in f for f in frames)


def test_a_provider_key_too_short_to_redact_is_named_in_a_warning_never_shown(caplog) -> None:
    from pathlib import Path

    from tier_router.gateway import secrets_redactor
    from tier_router.provider_keys import KeySource
    from tier_router.settings import Settings

    settings = Settings(rules_path=Path("unused.yaml"), api_keys=("team=trk-team-0123456789",), environ={})
    keys = KeySource({"SHORT_KEY": "abc123", "LONG_KEY": KEY})
    with caplog.at_level(logging.WARNING, logger="tier_router"):
        redactor = secrets_redactor(settings, keys, ["LONG_KEY", "SHORT_KEY"])
    assert "not redacted from answers and logs: SHORT_KEY" in caplog.text
    assert "abc123" not in caplog.text
    assert redactor.text(f"{KEY} trk-team-0123456789 abc123") == f"{REDACTED} {REDACTED} abc123"
