"""Shared test helpers: a scripted fake provider, the real router as a subprocess, the ledger
read back from `/v1/router/status`, and the client behaviours the lifecycle tests drive.

Plain modules, imported as ``tests.support.<name>`` (never through conftest magic).
"""
