"""`mock` kind: deterministic answers served in-process, so a new user can try the whole
flow (rules, fallback, cascades, splits, streaming, headers, costs) with no API key.

It is mounted into the shared httpx client as a transport for `mock://` URLs and speaks the
OpenAI wire format, so the forwarder treats it exactly like a real OpenAI-compatible
provider. The URL's host names the mock provider (`mock://fast` is "fast").

What it answers (`answers`): the canned text "[<model> via mock:<host>] You said: <the last
user message>"; with `response_format` json_object a JSON object ({"answer", "model"}), with
json_schema a value conforming to the schema (`instance`); with `tools` (or the deprecated
`functions`) and `tool_choice` not "none", one call of the named (else the first) function
with arguments conforming to its `parameters` — and text again after a tool result. `n`
choices, `max_tokens` / `max_completion_tokens` (cut, finish_reason "length"), streaming of
all of it (`stream`), and usage counted over what was sent and what was returned.

Options ride on the base URL's query, e.g.
`mock://fast?latency_ms=20&flaw_rate=0.3&flaws=json,refusal` (`options`; an unknown option
or a bad value is answered with a 400 naming it):

- `latency_ms`  delay before answering (a tenth of it between stream chunks). Default 0.
- `fail_rate`   share of requests answered 503, 0..1: deterministically every 1/rate-th call.
- `flaw_rate`   share of requests answered badly, 0..1. Default 0. Which requests is
                deterministic: a hash of the request's messages and the provider's name
                (not the model), compared with the rate. The same prompt always gets the
                same flaw from the same mock provider, and usually none from another one —
                so a cascade from a flawed mock provider to a different one recovers.
- `flaws`       which flaws, a comma list (default all); of those that apply to the
                answer, the hash picks one:
                `json`     invalid JSON when JSON was asked (the object cut in half, or a
                           prose preface before it);
                `tools`    a tool call's arguments missing a required property, or one
                           with a wrong type;
                `refusal`  "I'm sorry, but I can't help with that." instead of the answer;
                `truncate` the answer cut in half with finish_reason "length".
                A request the configured flaws cannot apply to (flaws=json, no JSON asked)
                is answered cleanly.
- `shallow_above_tokens`  text answers to prompts longer than this many tokens are marked
                "(shallow)": the demo's weak model on long prompts.

A judging prompt (`quality.judge`: two answers in `<answer_A>` / `<answer_B>`) is answered
with a verdict (`judge`): an answer marked "(shallow)" scores 3, any other 8.

Never use `mock` providers in a real rules file.
"""

from tier_router.providers.mock.options import Flaw, MockOptions, check_url
from tier_router.providers.mock.transport import MockTransport

__all__ = ["Flaw", "MockOptions", "MockTransport", "check_url"]
