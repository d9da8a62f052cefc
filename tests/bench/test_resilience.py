"""Redis killed, hung (SIGSTOP), slow and sluggish under a steady load through the HTTP
service.

Each test runs ``bench.resilience.run_fault_scenario`` with short phases: the real service
(``ogcache serve``) in a process of its own on a fresh PostgreSQL database, a redis-server of
the test's own (never the shared one), clients in this process reading cached routes, the
fault, the recovery. It asserts the issue's numbers: no failed request; the breaker open
within 1 s of the fault; closed, and the hit rate back above 90 %, within 10 s of the
recovery; no stale value after a write whose invalidation failed during the fault.

Latency is asserted loosely: timings on a shared machine are noisy, and a short fault gives
the few requests caught by the detection (those in flight when Redis stopped answering, at
most one cache timeout each) a large share of the percentile. The issue's
``p99 <= 2 x uncached`` is measured, with a longer run, by ``python -m bench resilience``
(``bench/README.md``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.resilience import (
    KINDS,
    MAX_OPEN_S,
    MAX_RECOVERY_S,
    BaselineResult,
    FaultKind,
    ResilienceConfig,
    ScenarioResult,
    prepared_database,
    run_baseline,
    run_fault_scenario,
)

pytestmark = pytest.mark.slow

CONFIG = ResilienceConfig(
    clients=6,
    rate=80.0,
    warm_s=1.0,
    fault_s=2.0,
    write_after_s=1.0,
    recovery_max_s=MAX_RECOVERY_S,
    tail_s=0.3,
    baseline_s=1.5,
    cache_timeout=0.15,
    cache_connect_timeout=0.15,
    cool_down=1.0,
    slow_call_threshold=0.1,
    stall_threshold=0.02,
    slow_delay=0.3,
    sluggish_delay=0.2,  # below the sluggish scenario's cache timeout:
    sluggish_timeout=0.5,  # Redis answers every call, 0.2 s late
)
MIN_PHASE_REQUESTS = 20


@pytest.fixture(scope="module")
async def database(postgres_url: str) -> AsyncIterator[str]:
    """A database of this module's own, migrated, with the demo data."""
    async with prepared_database(postgres_url) as url:
        yield url


@pytest.fixture(scope="module")
async def uncached(database: str, tmp_path_factory: pytest.TempPathFactory) -> BaselineResult:
    """The same load with the cache unreachable from the start: the database path."""
    result = await run_baseline(
        database_url=database, workdir=tmp_path_factory.mktemp("uncached"), config=CONFIG
    )
    assert result.latency.failed == 0
    assert "closed" not in result.breaker_states  # really uncached
    return result


def _summary(result: ScenarioResult) -> str:
    shown = result.as_dict()
    del shown["config"]
    return json.dumps(shown, indent=1)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_redis_fault_under_load_fails_no_request_and_serves_nothing_stale(
    kind: FaultKind, database: str, uncached: BaselineResult, tmp_path: Path
) -> None:
    result = await run_fault_scenario(
        kind, database_url=database, workdir=tmp_path, config=CONFIG, uncached=uncached
    )
    summary = _summary(result)
    # Each phase carried load (80 req/s are planned; a busy machine serves fewer).
    assert result.warm.requests >= MIN_PHASE_REQUESTS, summary
    assert result.fault.requests >= MIN_PHASE_REQUESTS, summary
    assert result.recovery.requests >= MIN_PHASE_REQUESTS, summary
    assert result.hit_rate_warm is not None, summary
    assert result.hit_rate_warm > 0.95, summary  # the load really was cached reads

    # Zero failed requests: no 5xx, no other error, no transport failure, the write included.
    assert result.failed == 0, summary
    assert result.write_status == 200, summary

    # The breaker opens within 1 s of the fault (the service's own log agrees).
    assert result.breaker_open_s is not None, summary
    assert result.breaker_open_s <= MAX_OPEN_S, summary
    assert result.breaker_open_logged_s is not None, summary
    assert result.breaker_open_logged_s <= MAX_OPEN_S, summary

    # Once Redis is back: the breaker closes, reads go to Redis again after the settle time
    # (two cool-downs), and the hit rate is above 90 %, within 10 s.
    assert result.breaker_closed_s is not None, summary
    assert result.breaker_closed_s <= MAX_RECOVERY_S, summary
    assert result.reads_resumed_s is not None, summary
    assert result.reads_resumed_s <= MAX_RECOVERY_S, summary
    assert result.hit_rate_recovered_s is not None, summary
    assert result.hit_rate_recovered_s <= MAX_RECOVERY_S, summary
    assert result.hit_rate_final is not None, summary
    assert result.hit_rate_final > 0.9, summary

    # No stale value afterwards. Not vacuous: the old value was in Redis when the fault
    # began (for hang, slow and sluggish it is still there when Redis comes back), the
    # write's invalidation failed and was remembered, then delivered.
    assert result.old_entry_in_redis_at_fault, summary
    assert result.pending_invalidations_max >= 1, summary
    assert result.pending_invalidations_end == 0, summary
    assert result.profile_reads_after_reads_resumed > 10, summary
    assert result.stale_reads == 0, summary
    assert result.final_read_fresh, summary
    assert not result.stale_entry_in_redis_end, summary

    # Latency, loosely (see the module's docstring): no request waits for long, and once
    # the breaker is open requests take the uncached path's time (the probe runs in the
    # background: no request waits for it).
    # Bounds are ten times what they measure (a cache timeout of 0.15 s; the uncached p99),
    # so a busy machine does not fail them; the bench holds the 2 x uncached.
    assert result.fault.max_ms is not None, summary
    assert result.fault.max_ms < 10 * 150, summary
    assert result.fault_after_open.p99_ms is not None, summary
    assert uncached.latency.p99_ms is not None
    assert result.fault_after_open.p99_ms <= 10 * uncached.latency.p99_ms + 100, summary
