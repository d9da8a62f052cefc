"""Per-namespace counters and latency windows, recorded by the cache front end.

Recording is a few integer additions and one ``deque.append`` per operation, with no I/O and
no lock (asyncio is single-threaded), so statistics add no round trip to the hot path.
Latency quantiles are computed on read over the most recent samples of each window.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["LatencySummary", "LatencyWindow", "NamespaceStats", "NamespaceStatsSnapshot"]

DEFAULT_WINDOW = 4096


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Milliseconds; ``count`` is every sample ever recorded, quantiles use the recent window."""

    count: int
    mean_ms: float | None
    p50_ms: float | None
    p99_ms: float | None


class LatencyWindow:
    """Count and sum of all samples, plus the most recent ``size`` samples for quantiles."""

    __slots__ = ("_recent", "count", "total")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        self.count = 0
        self.total = 0.0
        self._recent: deque[float] = deque(maxlen=size)

    def record(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self._recent.append(seconds)

    def summary(self) -> LatencySummary:
        if not self.count:
            return LatencySummary(0, None, None, None)
        ordered = sorted(self._recent)
        return LatencySummary(
            count=self.count,
            mean_ms=self.total / self.count * 1000,
            p50_ms=_quantile(ordered, 0.50) * 1000,
            p99_ms=_quantile(ordered, 0.99) * 1000,
        )


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty list."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class NamespaceStats:
    """Live counters of one namespace."""

    hits: int = 0
    misses: int = 0
    loads: int = 0
    load_errors: int = 0
    errors: int = 0
    decode_errors: int = 0
    sets: int = 0
    invalidations: int = 0
    operations: LatencyWindow = field(default_factory=LatencyWindow)
    load_times: LatencyWindow = field(default_factory=LatencyWindow)

    def snapshot(self, name: str) -> NamespaceStatsSnapshot:
        lookups = self.hits + self.misses
        return NamespaceStatsSnapshot(
            namespace=name,
            hits=self.hits,
            misses=self.misses,
            hit_rate=self.hits / lookups if lookups else None,
            loads=self.loads,
            load_errors=self.load_errors,
            errors=self.errors,
            decode_errors=self.decode_errors,
            sets=self.sets,
            invalidations=self.invalidations,
            operation_latency=self.operations.summary(),
            load_latency=self.load_times.summary(),
        )


@dataclass(frozen=True, slots=True)
class NamespaceStatsSnapshot:
    """A point-in-time copy of one namespace's statistics.

    ``errors`` counts failed or timed-out cache operations (each degraded to a miss or a
    skipped write); ``load_errors`` counts loaders that raised; ``decode_errors`` counts stored
    values that could not be decoded (each deleted and treated as a miss).
    """

    namespace: str
    hits: int
    misses: int
    hit_rate: float | None
    loads: int
    load_errors: int
    errors: int
    decode_errors: int
    sets: int
    invalidations: int
    operation_latency: LatencySummary
    load_latency: LatencySummary
