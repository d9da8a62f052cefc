"""The workload bench (``bench/workload.py``) in a tiny configuration, against the test
PostgreSQL and Redis: the report has its shape, and the cache keeps reads off the database.

The full run with a report is ``python -m bench workload`` (see ``bench/README.md``).
"""

from __future__ import annotations

from bench.workload import READ_OPS, WorkloadConfig, format_report, run_workload

TINY = WorkloadConfig(
    users=200,
    warmup_requests=600,
    warmup_concurrency=8,
    settle_requests=20,
    requests=300,
    uncached_requests=100,
    rounds=2,
    modes=("cached", "uncached"),
)


async def test_cached_reads_touch_the_database_less_than_uncached_ones(
    postgres_url: str, redis_url: str
) -> None:
    # The run uses a key prefix of its own in the shared Redis and removes its keys.
    result = await run_workload(TINY, database_url=postgres_url, redis_url=redis_url)

    assert result.modes == ["cached", "uncached"]
    assert result.measured_requests == {"cached": 300, "uncached": 100}
    for mode in result.modes:
        assert {"auth", "profile", "conversation", "menu", "read request"} <= set(result.ops[mode])
        assert set(result.ops[mode]) <= {*READ_OPS, "read request", "add_message",
                                         "update_profile", "relogin", "write request"}  # fmt: skip
    # Without a cache every read runs at least one statement; with it most run none.
    assert result.reads_without_db["uncached"] == 0.0
    assert result.reads_without_db["cached"] is not None
    assert result.reads_without_db["cached"] > 0.8
    cached, uncached = (result.queries_per_read_request[m] for m in ("cached", "uncached"))
    assert cached is not None
    assert uncached is not None
    assert cached < uncached / 2
    assert result.query_reduction is not None
    assert result.query_reduction > 0.5
    assert result.reads_measured > 0
    assert result.warmup_first_time_reads > 0
    assert result.cache_stats  # the cached mode's counters, per namespace
    assert "first_time_reads_below_1pct" in result.checks
    assert "reads served without the database" in format_report(result)
