"""Short soak (the full one is `bench/soak.py`): 600 requests at concurrency 64 through the
router under uvicorn on 127.0.0.1, provider A failing (20% 503s, then 10% timeouts), B healthy.

Bounds: zero lost requests; the ledger equals the sum of the per-request cost headers to the
micro-dollar; RSS growth after a warm-up tenth of the run under 32 MB (measured: < 1 MB).
"""

from __future__ import annotations

import pytest

from bench.soak import run_soak

RSS_GROWTH_MB = 32.0


@pytest.mark.integration
def test_short_soak_loses_nothing_and_counts_every_micro_dollar() -> None:
    result = run_soak(requests=600, concurrency=64)
    assert result["lost"] == 0, result["outcomes"]
    assert all(key.startswith("200") or key.endswith("error") for key in result["outcomes"]), result
    assert result["upstream_a"].get("status", 0) > 0
    assert result["upstream_a"].get("timeout", 0) > 0
    assert result["ledger_requests"] == 600
    assert result["header_cost_micro"] == result["ledger_cost_micro"] > 0
    assert result["rss_growth_mb"] < RSS_GROWTH_MB, result
