"""The ASGI app built from the environment: `uvicorn tier_router.asgi:app`.

(`tier-router serve` builds its own app from its settings, and says at start-up what it
serves; this module says the one thing that matters when run by hand: no router keys.)
"""

import logging

from tier_router.dataclass_bytecode import precompiled

with precompiled():  # the Lambda artifact's dataclass methods, compiled at build (docs/coldstart.md)
    # What the first upstream request imports anyway (httpcore's connection locks and sockets on
    # asyncio): imported here, where the 20 dataclasses it creates come precompiled.
    import anyio._backends._asyncio
    import anyio._core._sockets  # noqa: F401

    from tier_router.app import create_app

    app = create_app()
if not app.gateway.auth.configured and app.gateway.auth.loader is None and not app.gateway.auth.require:
    logging.getLogger("tier_router").warning(
        "no router keys configured: the router accepts requests without a key"
    )
