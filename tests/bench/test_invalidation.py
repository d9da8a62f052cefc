"""The invalidation bench (``bench/invalidation.py``) in a tiny configuration, in two real OS
processes against the test Redis: the report has its shape, every invalidation made by the
writer, by either mechanism, reached the reader's L1 and evicted a key it held, and a pub/sub
channel misses the changes nobody published.

The full run with a report is ``python -m bench invalidation`` (see ``bench/README.md``).
"""

from __future__ import annotations

from bench.invalidation import CONTENDERS, run_invalidation

KEYS = 10  # per contender: 80 changes in all


def test_every_invalidation_reaches_the_other_process_l1(redis_url: str) -> None:
    # The run uses key prefixes of its own in the shared Redis and removes its keys.
    report = run_invalidation(
        redis_url=redis_url,
        rounds=1,
        keys=KEYS,
        interval=0.002,
        load_tasks=4,
        coverage_wait=0.3,
        timeout=60,
    )

    assert [s.contender for s in report.contenders] == [c.name for c in CONTENDERS]
    for s in report.contenders:
        assert s.invalidations == KEYS, s.contender
        assert s.writer_call.count == KEYS
        assert s.writer_failures == 0, s.contender
        assert (s.early, s.flushes) == (0, 0), s.contender
    reported = [s for s in report.contenders if s.mechanism == "tracking" or not s.coverage]
    for s in reported:
        assert (s.delivered, s.lost) == (KEYS, 0), s.contender
        # Each key was in the reader's L1 when its notification came.
        assert s.not_in_l1 == 0, s.contender
        assert s.delay_after_call_start.count == KEYS
        assert s.delay_after_call_start.min_ms is not None
        assert s.delay_after_call_start.min_ms > 0
        if not s.coverage:
            assert s.reads_after_eviction == 0, s.contender
            assert s.still_in_l1_at_end == 0, s.contender
    for s in report.contenders:
        if s.mechanism == "pubsub" and s.coverage:  # nobody published: R never heard
            assert (s.delivered, s.still_in_l1_at_end) == (0, KEYS), s.contender
    assert sum(s.local_hits for s in report.contenders) > 0  # the reader did serve from L1
    assert all(report.checks.values()), report.checks
