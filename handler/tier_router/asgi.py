"""The ASGI app built from the environment: `uvicorn tier_router.asgi:app`."""

from tier_router.app import create_app

app = create_app()
