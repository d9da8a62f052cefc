"""Per-namespace counters and latency windows, recorded by the cache front end.

Recording is a few integer additions and one ``deque.append`` per operation, with no I/O and
no lock (asyncio is single-threaded), so statistics add no round trip to the hot path.
Latency quantiles are computed on read over the most recent samples of each window.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "LATENCY_BUCKETS",
    "LatencySummary",
    "LatencyWindow",
    "NamespaceStats",
    "NamespaceStatsSnapshot",
]

DEFAULT_WINDOW = 4096
# Upper bounds (seconds) of the latency histogram, as exported to Prometheus.
LATENCY_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Milliseconds; ``count`` is every sample ever recorded, quantiles use the recent window.

    ``buckets`` holds, per bound of :data:`LATENCY_BUCKETS`, how many samples took at most
    that long (cumulative, as in a Prometheus histogram); ``total_seconds`` is their sum.
    """

    count: int
    mean_ms: float | None
    p50_ms: float | None
    p99_ms: float | None
    total_seconds: float = 0.0
    buckets: tuple[int, ...] = ()


class LatencyWindow:
    """Count and sum of all samples, plus the most recent ``size`` samples for quantiles."""

    __slots__ = ("_buckets", "_recent", "count", "total")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        self.count = 0
        self.total = 0.0
        self._recent: deque[float] = deque(maxlen=size)
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)

    def record(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self._recent.append(seconds)
        self._buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def summary(self) -> LatencySummary:
        cumulative = []
        running = 0
        for count in self._buckets[:-1]:
            running += count
            cumulative.append(running)
        if not self.count:
            return LatencySummary(0, None, None, None, 0.0, tuple(cumulative))
        ordered = sorted(self._recent)
        return LatencySummary(
            count=self.count,
            mean_ms=self.total / self.count * 1000,
            p50_ms=_quantile(ordered, 0.50) * 1000,
            p99_ms=_quantile(ordered, 0.99) * 1000,
            total_seconds=self.total,
            buckets=tuple(cumulative),
        )


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty list."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class NamespaceStats:
    """Live counters of one namespace."""

    hits: int = 0
    local_hits: int = 0
    misses: int = 0
    loads: int = 0
    load_errors: int = 0
    errors: int = 0
    decode_errors: int = 0
    sets: int = 0
    invalidations: int = 0
    coalesced: int = 0
    lease_waits: int = 0
    lease_timeouts: int = 0
    sets_rejected: int = 0
    stale_served: int = 0
    early_refreshes: int = 0
    short_circuited: int = 0
    oversized: int = 0
    # The consistency verifier (ogcache.cache.verifier); ages are upper bounds, in seconds.
    verified: int = 0
    inconsistent: int = 0
    verify_skipped: int = 0
    verify_errors: int = 0
    inconsistency_age_max: float = 0.0
    inconsistency_age_last: float | None = None
    operations: LatencyWindow = field(default_factory=LatencyWindow)
    load_times: LatencyWindow = field(default_factory=LatencyWindow)

    def snapshot(self, name: str) -> NamespaceStatsSnapshot:
        lookups = self.hits + self.misses
        return NamespaceStatsSnapshot(
            namespace=name,
            hits=self.hits,
            local_hits=self.local_hits,
            misses=self.misses,
            hit_rate=self.hits / lookups if lookups else None,
            loads=self.loads,
            load_errors=self.load_errors,
            errors=self.errors,
            decode_errors=self.decode_errors,
            sets=self.sets,
            invalidations=self.invalidations,
            coalesced=self.coalesced,
            lease_waits=self.lease_waits,
            lease_timeouts=self.lease_timeouts,
            sets_rejected=self.sets_rejected,
            stale_served=self.stale_served,
            early_refreshes=self.early_refreshes,
            short_circuited=self.short_circuited,
            oversized=self.oversized,
            operation_latency=self.operations.summary(),
            load_latency=self.load_times.summary(),
            verified=self.verified,
            inconsistent=self.inconsistent,
            verify_skipped=self.verify_skipped,
            verify_errors=self.verify_errors,
            inconsistency_age_max=self.inconsistency_age_max,
            inconsistency_age_last=self.inconsistency_age_last,
        )


@dataclass(frozen=True, slots=True)
class NamespaceStatsSnapshot:
    """A point-in-time copy of one namespace's statistics.

    ``errors`` counts failed or timed-out cache operations (each degraded to a miss or a
    skipped write); ``load_errors`` counts loaders that raised; ``decode_errors`` counts stored
    values that could not be decoded (each deleted and treated as a miss). ``coalesced``
    counts misses that shared another caller's load in this process; ``lease_waits`` misses
    that waited for another process's load, ``lease_timeouts`` those that gave up waiting and
    loaded without caching; ``sets_rejected`` loaded values not stored because an
    invalidation (or a newer write) came first; ``stale_served`` expired values served because
    the loader failed; ``early_refreshes`` entries reloaded before they expired;
    ``short_circuited`` calls that skipped the cache because its circuit breaker was open;
    ``oversized`` values not cached because they exceeded ``max_value_bytes``.
    ``local_hits`` counts the hits (included in ``hits``) served from the in-process tier.
    The verifier's (``docs/consistency.md``): ``verified`` sampled hits checked against the
    loader, ``inconsistent`` those found still differing from it (included in ``verified``),
    ``verify_skipped`` samples dropped because ``max_pending`` checks were in flight,
    ``verify_errors`` checks whose loader or store failed; ``inconsistency_age_max`` and
    ``_last`` bound how long an inconsistent entry had been cached (seconds).
    """

    namespace: str
    hits: int
    local_hits: int
    misses: int
    hit_rate: float | None
    loads: int
    load_errors: int
    errors: int
    decode_errors: int
    sets: int
    invalidations: int
    coalesced: int
    lease_waits: int
    lease_timeouts: int
    sets_rejected: int
    stale_served: int
    early_refreshes: int
    short_circuited: int
    oversized: int
    operation_latency: LatencySummary
    load_latency: LatencySummary
    verified: int = 0
    inconsistent: int = 0
    verify_skipped: int = 0
    verify_errors: int = 0
    inconsistency_age_max: float = 0.0
    inconsistency_age_last: float | None = None
