"""Prometheus metrics read from the cache's own statistics at scrape time.

Nothing is recorded twice: the collector turns the per-namespace counters and latency
histograms that the cache keeps anyway into metric families when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ogcache.cache import Cache
from ogcache.cache.breaker import BreakerState, BreakerStats
from ogcache.cache.stats import LATENCY_BUCKETS, LatencySummary, NamespaceStatsSnapshot

__all__ = ["CacheCollector", "render_metrics"]

_COUNTERS = (
    ("hits", "Cache lookups that found a value."),
    ("local_hits", "Hits served from the in-process tier (also counted in hits)."),
    ("misses", "Cache lookups that found nothing (including failed lookups)."),
    ("loads", "Loader calls after a miss that returned a value."),
    ("load_errors", "Loader calls that raised."),
    ("errors", "Cache operations that failed or timed out and were served without the cache."),
    ("decode_errors", "Stored values that could not be decoded (dropped, served as misses)."),
    ("sets", "Values written to the cache."),
    ("invalidations", "Entries invalidated after writes."),
    ("coalesced", "Misses that shared another caller's load in this process."),
    ("lease_waits", "Misses that waited for another process's load."),
    ("lease_timeouts", "Misses that stopped waiting and loaded without caching."),
    ("sets_rejected", "Loaded values not stored because an invalidation came first."),
    ("stale_served", "Expired values served because the loader failed."),
    ("early_refreshes", "Entries refreshed before they expired."),
    ("short_circuited", "Calls that skipped the cache because its circuit was open."),
    ("oversized", "Values not cached because they exceeded the size limit."),
    ("verified", "Sampled hits the verifier re-read from the database and compared."),
    ("inconsistent", "Verified hits still differing from the database after a re-check."),
    ("verify_skipped", "Verifier samples skipped: too many checks in flight."),
    ("verify_errors", "Verifier checks whose database read or cache read failed."),
)


class CacheCollector(Collector):
    """Exports one :class:`Cache`'s statistics; ``up`` is set by the scrape handler."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self.up: bool | None = None

    def collect(self) -> Iterator[Metric]:
        snapshots = self._cache.stats()
        yield from self._counters(snapshots)
        yield from self._latencies(snapshots)
        breaker = self._cache.breaker_stats()
        if breaker is not None:
            yield from self._circuit(breaker)
        yield from self._local_tier()
        yield self._inconsistency_age(snapshots)
        yield from self._up()

    @staticmethod
    def _counters(snapshots: dict[str, NamespaceStatsSnapshot]) -> Iterator[Metric]:
        """One counter family per statistic, labelled by namespace."""
        for field, documentation in _COUNTERS:
            family = CounterMetricFamily(
                f"ogcache_cache_{field}", documentation, labels=["namespace"]
            )
            for name, snapshot in snapshots.items():
                family.add_metric([name], getattr(snapshot, field))
            yield family

    @classmethod
    def _latencies(cls, snapshots: dict[str, NamespaceStatsSnapshot]) -> Iterator[Metric]:
        yield cls._histogram(
            "ogcache_cache_operation_seconds",
            "Latency of cache operations.",
            {name: s.operation_latency for name, s in snapshots.items()},
        )
        yield cls._histogram(
            "ogcache_cache_load_seconds",
            "Latency of loaders (database reads) after a miss.",
            {name: s.load_latency for name, s in snapshots.items()},
        )

    @staticmethod
    def _circuit(breaker: BreakerStats) -> Iterator[Metric]:
        """The circuit breaker in front of the backend: its state, trips and probes."""
        state = GaugeMetricFamily(
            "ogcache_cache_circuit_state",
            "Circuit breaker state: 1 for the current one of "
            + ", ".join(state.value for state in BreakerState)
            + ".",
            labels=["state"],
        )
        for candidate in BreakerState:
            state.add_metric([candidate.value], 1.0 if breaker.state is candidate else 0.0)
        yield state
        yield CounterMetricFamily(
            "ogcache_cache_circuit_trips", "Times the circuit opened.", value=breaker.trips
        )
        yield CounterMetricFamily(
            "ogcache_cache_circuit_open_seconds",
            "Seconds the circuit has not been closed.",
            value=breaker.open_seconds,
        )
        for name, documentation, value in (
            (
                "suspicions",
                "Times a stall made the breaker suspect the backend.",
                breaker.suspicions,
            ),
            ("false_alarms", "Suspicions the probe cleared at once.", breaker.false_alarms),
            ("slow_calls", "Answers slower than the slow-call threshold.", breaker.slow_calls),
            ("probes", "Background probes of the backend.", breaker.probes),
        ):
            yield CounterMetricFamily(f"ogcache_cache_circuit_{name}", documentation, value=value)
        yield GaugeMetricFamily(
            "ogcache_cache_pending_invalidations",
            "Invalidations not yet delivered (replayed when the backend answers again).",
            value=breaker.pending_invalidations,
        )

    def _local_tier(self) -> Iterator[Metric]:
        """The in-process tier's figures; nothing until the cache has one in use."""
        local = self._cache.local_state()
        if local is None:
            return
        tier, live = local
        yield GaugeMetricFamily(
            "ogcache_cache_local_live",
            "1 while the in-process tier may serve (its invalidation feed is live).",
            value=1.0 if live else 0.0,
        )
        yield GaugeMetricFamily(
            "ogcache_cache_local_entries", "Entries in the in-process tier.", value=tier.entries
        )
        yield GaugeMetricFamily(
            "ogcache_cache_local_bytes",
            "Stored size of the values in the in-process tier.",
            value=tier.bytes,
        )
        yield CounterMetricFamily(
            "ogcache_cache_local_flushes",
            "Times the in-process tier was emptied (feed interrupted, cache cleared).",
            value=tier.flushes,
        )

    @staticmethod
    def _inconsistency_age(snapshots: dict[str, NamespaceStatsSnapshot]) -> Metric:
        """The verifier's oldest inconsistent entry per namespace (an upper bound)."""
        family = GaugeMetricFamily(
            "ogcache_cache_inconsistency_age_seconds",
            "Most seconds an entry found inconsistent can have been cached (max seen).",
            labels=["namespace"],
        )
        for name, snapshot in snapshots.items():
            family.add_metric([name], snapshot.inconsistency_age_max)
        return family

    def _up(self) -> Iterator[Metric]:
        """Whether the backend answered the scrape handler's probe; nothing before one ran."""
        if self.up is None:
            return
        up = GaugeMetricFamily(
            "ogcache_cache_up",
            "1 if the cache backend answered the last probe.",
            labels=["backend"],
        )
        up.add_metric([self._cache.backend.name], 1.0 if self.up else 0.0)
        yield up

    @staticmethod
    def _histogram(
        name: str, documentation: str, summaries: dict[str, LatencySummary]
    ) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=["namespace"])
        for namespace, summary in summaries.items():
            buckets = [
                (str(bound), float(count))
                for bound, count in zip(LATENCY_BUCKETS, summary.buckets, strict=True)
            ]
            buckets.append(("+Inf", float(summary.count)))
            family.add_metric([namespace], buckets, sum_value=summary.total_seconds)
        return family


def render_metrics(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
