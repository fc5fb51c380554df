"""Routing core: the rules file, its compilation, and the decision engine. No network, no HTTP."""
