"""Change capture's figures for ``/metrics`` and ``GET /api/cache``: what this process applied
(only the leader applies on PostgreSQL; a standby reports zeros and its role)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ogcache.cache.stats import LATENCY_BUCKETS
from ogcache.changes import CaptureStats, ChangeCapture

__all__ = ["ChangeCollector", "changes_json"]

ROLES = ("starting", "leader", "standby", "local", "reconnecting", "stopped")


class ChangeCollector(Collector):
    def __init__(self, capture: ChangeCapture) -> None:
        self._capture = capture

    def collect(self) -> Iterator[Any]:
        stats = self._capture.stats
        lag = stats.lag_summary()
        histogram = HistogramMetricFamily(
            "ogcache_change_lag_seconds",
            "From a database change (its trigger) to its cache invalidation.",
        )
        buckets = [
            (str(bound), float(count))
            for bound, count in zip(LATENCY_BUCKETS, lag.buckets, strict=True)
        ]
        histogram.add_metric([], [*buckets, ("+Inf", float(lag.count))], lag.total_seconds)
        yield histogram
        for name, documentation, value in (
            ("changes_applied", "Database changes applied to the cache.", stats.applied),
            ("change_invalidations", "Cache entries invalidated for them.", stats.invalidated),
            ("change_failures", "Passes whose invalidation failed (retried).", stats.failures),
            ("change_errors", "Database errors of the capture (reconnected).", stats.errors),
        ):
            yield CounterMetricFamily(f"ogcache_{name}", documentation, value=value)
        yield GaugeMetricFamily(
            "ogcache_change_backlog", "Changes waiting after the last pass.", value=stats.backlog
        )
        role = GaugeMetricFamily(
            "ogcache_change_role", "This process's part in change capture.", labels=["role"]
        )
        for name in ROLES:
            role.add_metric([name], 1.0 if stats.role == name else 0.0)
        yield role


def changes_json(stats: CaptureStats, *, enabled: bool) -> dict[str, Any]:
    lag = stats.lag_summary()
    return {
        "enabled": enabled,
        "role": stats.role,
        "applied": stats.applied,
        "invalidated": stats.invalidated,
        "backlog": stats.backlog,
        "failures": stats.failures,
        "errors": stats.errors,
        "lastError": stats.last_error,
        "lagMs": {"p50": lag.p50_ms, "p99": lag.p99_ms, "count": lag.count},
    }
