from __future__ import annotations

from ogcache.cache.stats import LATENCY_BUCKETS, LatencyWindow


def test_an_empty_window_has_no_figures() -> None:
    summary = LatencyWindow().summary()
    assert (summary.count, summary.mean_ms, summary.p99_ms) == (0, None, None)
    assert summary.buckets == (0,) * len(LATENCY_BUCKETS)


def test_quantiles_use_nearest_rank() -> None:
    window = LatencyWindow()
    for millisecond in range(1, 101):
        window.record(millisecond / 1000)
    summary = window.summary()
    assert summary.p50_ms == 50
    assert summary.p99_ms == 99
    assert summary.mean_ms is not None
    assert round(summary.mean_ms, 6) == 50.5


def test_buckets_are_cumulative_with_inclusive_bounds() -> None:
    window = LatencyWindow()
    for seconds in (0.0001, 0.0002, 0.003, 20.0):
        window.record(seconds)
    summary = window.summary()
    by_bound = dict(zip(LATENCY_BUCKETS, summary.buckets, strict=True))
    assert by_bound[0.0001] == 1
    assert by_bound[0.00025] == 2
    assert by_bound[0.005] == 3
    assert by_bound[10.0] == 3  # the 20 s sample is only in +Inf (the total count)
    assert summary.count == 4


def test_quantiles_cover_only_the_recent_window() -> None:
    window = LatencyWindow(size=10)
    for _ in range(100):
        window.record(1.0)
    for _ in range(10):
        window.record(0.001)
    summary = window.summary()
    assert summary.p99_ms == 1.0
    assert summary.count == 110
