"""The ASGI app built from the environment: `uvicorn tier_router.asgi:app`.

(`tier-router serve` builds its own app from its settings, and says at start-up what it
serves; this module says the one thing that matters when run by hand: no router keys.)
"""

import logging

from tier_router.dataclass_bytecode import precompiled

with precompiled():  # the Lambda artifact's dataclass methods, compiled at build (docs/coldstart.md)
    from tier_router.app import create_app

    app = create_app()
if not app.gateway.auth.configured and app.gateway.auth.loader is None and not app.gateway.auth.require:
    logging.getLogger("tier_router").warning(
        "no router keys configured: the router accepts requests without a key"
    )
