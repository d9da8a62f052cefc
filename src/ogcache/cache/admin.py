"""The administrative calls of a cache: clearing, counting, probing, reporting.

Unlike the data path, these raise :class:`~ogcache.cache.exceptions.BackendError` when the
store fails, so an operator who asked to clear the cache learns that nothing was cleared.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from ogcache.cache.backend import CacheBackend, KeyCount
from ogcache.cache.breaker import BreakerStats
from ogcache.cache.breaker_backend import BreakerBackend
from ogcache.cache.exceptions import BackendError
from ogcache.cache.l1 import L1
from ogcache.cache.local import LocalStats
from ogcache.cache.memo import Memo
from ogcache.cache.namespace import validate_prefix
from ogcache.cache.policy import Policy
from ogcache.cache.report import CacheReport, Probe
from ogcache.cache.stats import NamespaceStatsSnapshot

__all__ = ["Administration"]

T = TypeVar("T")


class Administration:
    """Mixed into :class:`~ogcache.cache.Cache`, whose attributes it uses."""

    backend: CacheBackend
    prefix: str
    policy: Policy
    _store: CacheBackend
    _l1: L1
    _guarded: BreakerBackend | None
    _probe: Memo[Probe]

    def stats(self) -> dict[str, NamespaceStatsSnapshot]:
        raise NotImplementedError

    def breaker_stats(self) -> BreakerStats | None:
        """The circuit breaker's state and counters; ``None`` without a breaker (no I/O)."""
        return None if self._guarded is None else self._guarded.stats()

    def local_state(self) -> tuple[LocalStats, bool] | None:
        """The in-process tier's size and counters, and whether it may serve now; ``None``
        until a namespace with a ``local_ttl`` was used on a backend with an invalidation feed
        (no I/O)."""
        return self._l1.state()

    async def clear_prefix(self, prefix: str) -> int:
        """Remove this application's keys whose part after ``{prefix}:`` starts with ``prefix``.

        ``prefix`` is literal: glob characters match only themselves. Returns keys removed.
        """
        validate_prefix(prefix)
        return await self._clear(f"{self.prefix}:{prefix}")

    async def clear(self) -> int:
        """Remove every key of this application (never other applications' keys)."""
        return await self._clear(f"{self.prefix}:")

    async def _clear(self, prefix: str) -> int:
        try:
            return await self._admin("clear", self._store.delete_prefix(prefix))
        finally:
            self._l1.flush()
            self._probe.forget()

    async def count_keys(self, prefix: str = "") -> KeyCount:
        """Keys of this application (under ``prefix`` if given), at bounded cost."""
        if prefix:
            validate_prefix(prefix)
        return await self._admin(
            "count_keys",
            self._store.count_prefix(f"{self.prefix}:{prefix}", self.policy.key_count_limit),
        )

    async def ping(self) -> None:
        await self._admin("ping", self._store.ping())

    async def _admin(self, operation: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"cache {operation} failed: {exc}") from exc

    async def report(self, *, max_age: float = 0.0) -> CacheReport:
        """Availability, key count, memory and statistics; never raises for a down backend.

        The key count (a bounded ``SCAN``) and ``INFO`` may be up to ``max_age`` seconds old:
        callers that allow it share one measurement, so asking often costs the backend at most
        one per ``max_age``. The statistics of this process are always current.
        """
        probe, age = await self._probe.get(self._measure, max_age)
        local = self.local_state()
        return CacheReport(
            backend=self.backend.name,
            available=probe.error is None,
            prefix=self.prefix,
            keys=probe.keys,
            info=probe.info,
            namespaces=self.stats(),
            breaker=self.breaker_stats(),
            error=probe.error,
            age=age,
            local=None if local is None else local[0],
            local_live=None if local is None else local[1],
        )

    async def _measure(self) -> Probe:
        try:
            keys = await self.count_keys()
            info = await self._admin("info", self._store.info())
        except BackendError as exc:
            return Probe(keys=None, info=None, error=str(exc))
        return Probe(keys=keys, info=info)
