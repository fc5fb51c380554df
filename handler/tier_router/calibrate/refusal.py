"""Why calibrate writes no rules: too few labels, no usable tier, a target the data cannot meet."""

from __future__ import annotations

from tier_router.errors import RouterError


class Refused(RouterError):
    """Calibration stops here; the message is the reason, for a person to act on."""
