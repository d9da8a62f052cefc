"""What a cache can say about itself, and the costly part of it shared between callers."""

from __future__ import annotations

from dataclasses import dataclass

from ogcache.cache.backend import BackendInfo, KeyCount
from ogcache.cache.breaker import BreakerStats
from ogcache.cache.local import LocalStats
from ogcache.cache.stats import NamespaceStatsSnapshot

__all__ = ["CacheReport", "Probe"]


@dataclass(frozen=True, slots=True)
class CacheReport:
    """Availability, size, memory and per-namespace statistics.

    ``keys`` is ``None`` when the backend could not be reached; ``keys.complete`` is False when
    counting stopped at its bound (a huge shared Redis), in which case the count is a lower bound.
    """

    backend: str
    available: bool
    prefix: str
    keys: KeyCount | None
    info: BackendInfo | None
    namespaces: dict[str, NamespaceStatsSnapshot]
    breaker: BreakerStats | None = None
    error: str | None = None
    local: LocalStats | None = None
    local_live: bool | None = None
    # Seconds since ``available``, ``keys``, ``info`` and ``error`` were measured.
    age: float = 0.0


@dataclass(frozen=True, slots=True)
class Probe:
    """What :meth:`Cache.report` asks the backend: the costly part, shared between callers."""

    keys: KeyCount | None
    info: BackendInfo | None
    error: str | None = None
