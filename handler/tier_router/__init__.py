"""tier-router: an LLM routing gateway that runs as a serverless function."""

__version__ = "0.1.0"
