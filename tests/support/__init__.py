"""What the tests share, one module per thing, imported by name (`tests.support.<name>`;
the root conftest turns the most used into fixtures):

- `rules`: the rules document most router tests route by, and its provider keys
- `openai_bodies`: OpenAI request and answer bodies, SSE encoded and read back
- `router_app`: the router app in-process (ASGI client) or under uvicorn in a thread
- `router_process`: the router as `tier-router serve` in its own process
- `fake_upstream`: the fake OpenAI / Anthropic provider (fault injection; also a CLI)
- `fake_providers`: three of them on 127.0.0.1 and their control API
- `scripted_upstream`: a per-request script in front of a fake provider
- `loopback`: uvicorn in a thread, free ports
- `moto_server`, `moto_process`: fake AWS credentials; moto's DynamoDB/SSM/Secrets Manager
- `scripted_wire`: an AWS endpoint answering from a script (httpx.MockTransport)
- `stores`: store wrappers that count, slow down or fail calls
- `holds`: budget holds under a store that loses or half-answers writes (adversary tests)
- `clock`: a settable clock
- `clients`, `agreement`, `stack`, `slow_proxy`, `lambda_child`: the lifecycle proofs' clients,
  ledger checks, stack, slow network and Lambda invocation
"""
