"""The one place tier-router reaches into httpx's internals: the client's transport for a URL.

A provider call needs none of `AsyncClient.send`'s layers (auth and redirect loops, event
hooks, cookie jar), and they cost more per request than the rest of the router's preparation.
So the forwarder hands its request straight to the transport `send` would have picked — the
pool and its timeouts, the `mock://` mount, a test double — found with the client's private
`_transport_for_url`. httpx has no public API for that lookup.

`tests/test_transport.py` holds the lookup to what the forwarder relies on, and fails loudly
when an httpx upgrade changes it; pyproject.toml pins httpx to `HTTPX_TESTED`. If the lookup
is missing or answers something that is not a transport, forwarding still works through
`client.send` (`ClientTransport`), only slower.
"""

from __future__ import annotations

import httpx

HTTPX_TESTED = ">=0.27,<0.30"
"""The httpx versions `_transport_for_url` was tested with (the pin in pyproject.toml)."""


def transport_for(client: httpx.AsyncClient, url: httpx.URL) -> httpx.AsyncBaseTransport:
    """The transport `client.send` would use for `url` (look it up once per URL: it is a
    walk over the client's mounts)."""
    lookup = getattr(client, "_transport_for_url", None)
    if lookup is not None:
        transport = lookup(url)
        if isinstance(transport, httpx.AsyncBaseTransport):
            return transport
    return ClientTransport(client)


class ClientTransport(httpx.AsyncBaseTransport):
    """`client.send` behind the transport interface: for a client without a usable
    `_transport_for_url` (a future httpx), so the forwarder keeps working, only slower."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.client.send(request, stream=True)
