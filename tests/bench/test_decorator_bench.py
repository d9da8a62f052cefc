"""bench.decorator measures hits only, and reports every way and ratio (a short run)."""

from __future__ import annotations

from bench.decorator import _compare
from ogcache.cache import MemoryBackend


async def test_a_short_run_reports_every_way_and_ratio() -> None:
    result = await _compare(MemoryBackend(), 0.0, rounds=2, calls=50)
    assert set(result["p50_us"]) == {"decorator", "inline", "helper"}
    assert set(result["ratio_p50"]) == {"decorator/inline", "decorator/helper"}
    assert all(value > 0 for value in result["p50_us"].values())
