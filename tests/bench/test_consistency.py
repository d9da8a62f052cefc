"""The consistency checker and the stampede bench (``bench/``), in real OS processes over real
PostgreSQL and Redis: ogcache must show no stale read, no stale key and one load per cold
key; the naive get/load/set pattern, run by the same checker, must show stale reads (which
proves the checker sees the failure it looks for).

The longer run with a report is ``python -m bench concurrency`` (see ``bench/README.md``).
"""

from __future__ import annotations

import pytest

from bench.consistency import run_checker
from bench.stampede import run_stampede

pytestmark = pytest.mark.slow

KEYS = 20


def test_ogcache_serves_no_stale_read_and_leaves_no_stale_key(
    postgres_url: str, redis_url: str
) -> None:
    result = run_checker(
        "ogcache",
        database_url=postgres_url,
        redis_url=redis_url,
        processes=2,
        readers_per_process=16,
        writers_per_process=2,
        keys=KEYS,
        reads_target=100_000,
        seed=7,
        loader_delay_max=0.002,
        timeout=80,
    )
    assert result.reads == 100_000
    assert result.stale_reads == 0, result.examples
    assert result.stale_keys == 0, result.examples
    # Not vacuous: writes happened, reads came after them, keys were reloaded many times, and
    # some loads were overtaken by a write's invalidation (their compare-and-set was refused).
    assert result.writes > 1000
    assert result.reads_after_a_write > 90_000
    assert result.loads > 10 * KEYS
    assert result.sets_rejected is not None
    assert result.sets_rejected > 0


def test_the_naive_pattern_serves_stale_reads_under_the_same_load(
    postgres_url: str, redis_url: str
) -> None:
    result = run_checker(
        "naive",
        database_url=postgres_url,
        redis_url=redis_url,
        processes=2,
        readers_per_process=16,
        writers_per_process=2,
        keys=KEYS,
        reads_target=20_000,
        seed=7,
        loader_delay_max=0.002,
        timeout=60,
    )
    assert result.reads == 20_000
    assert result.writes > 200
    assert result.stale_reads + result.stale_keys > 0


@pytest.mark.parametrize("processes", [1, 4])
def test_a_thousand_concurrent_cold_reads_load_once(redis_url: str, processes: int) -> None:
    result = run_stampede(
        "ogcache", redis_url=redis_url, processes=processes, readers=1000, loader_delay=0.05
    )
    assert result.wrong_values == 0
    assert result.latency_all.count == 1000
    if processes == 1:
        assert result.loads == 1
        assert result.coalesced is not None
        assert result.coalesced > 0
    else:
        assert result.loads <= 1
