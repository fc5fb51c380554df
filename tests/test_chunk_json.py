"""`providers.base.loads` (the stream chunk parser) calls json's scanner directly
(`json.scanner.make_scanner`, an undocumented entry point): it must give `json.loads`'s answer
and `json.loads`'s error for every text, so a Python upgrade that changes the scanner fails here
rather than in a stream."""

from __future__ import annotations

import json

import pytest
from tier_router.providers.base import loads

GOOD = [
    '{"id":"c1","choices":[{"index":0,"delta":{"content":"hé \\u00e9 \\ud83d\\ude00"}}]}',
    '{"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15},"choices":[]}',
    ' {"a":1}',
    '{"a":1} ',
    '\n{"a": [1, 2.5, -3e2, true, false, null]}\n',
    "[]",
    '"text"',
    "0",
    "-1.5E+3",
    "NaN",
    "Infinity",
    '{"a":{"b":{"c":{"d":[[[]]]}}}}',
]
BAD = [
    "",
    " ",
    "{",
    '{"a":1}{"b":2}',
    '{"a":1} x',
    "{'a':1}",
    '{"a":tru}',
    '{"a":1,}',
    "[1,]",
    '"unterminated',
    '{"a":"\\x"}',
    "\u00a0{}",
]


@pytest.mark.parametrize("text", GOOD)
def test_a_chunk_parses_as_json_loads_parses_it(text: str) -> None:
    expected = json.loads(text)
    got = loads(text)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert type(got) is type(expected)


@pytest.mark.parametrize("text", BAD)
def test_a_bad_chunk_fails_as_json_loads_fails(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        loads(text)
    assert (got.value.msg, got.value.pos) == (expected.value.msg, expected.value.pos)
