""" "Logged once per outage", for the components that carry on when the state store fails.

Breakers, budgets, rate limits and the response cache fail open (or, for `on_store_error:
reject` budgets, closed) on a store error: a request must not pay for a broken store with a
log line each. `Outage` logs the first failure as a WARNING that says what the component
does meanwhile, the recovery once at INFO, and nothing in between.
"""

from __future__ import annotations

import logging


class Outage:
    """One component's view of the store's health, for its log."""

    def __init__(self, logger: logging.Logger, component: str, meanwhile: str = "") -> None:
        self._logger = logger
        self._component = component
        self._meanwhile = meanwhile
        self.down = False

    def failed(self, what: str, exc: Exception) -> None:
        """A store call failed; `what` names it ("reserve", "read", ...)."""
        if not self.down:
            self.down = True
            meanwhile = f"; {self._meanwhile}" if self._meanwhile else ""
            self._logger.warning("%s store failed (%s): %s%s", self._component, what, exc, meanwhile)

    def ok(self) -> None:
        """A store call succeeded."""
        if self.down:
            self.down = False
            self._logger.info("%s store reachable again", self._component)
