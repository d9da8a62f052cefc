"""Atomic read-modify-write of one entry, by compare-and-set on the entry's write id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from ogcache.cache.envelope import WRITE_ID_OFFSET
from ogcache.cache.exceptions import BackendError
from ogcache.cache.fill import Parts
from ogcache.cache.namespace import Namespace
from ogcache.cache.stats import NamespaceStats
from ogcache.cache.stored import Found, State

__all__ = ["Update"]

T = TypeVar("T")

_now = time.perf_counter
# Compare-and-set rounds of one update: each lost round means another writer succeeded, so
# this bounds the writers an update waits behind, not the time a lone writer takes.
_MAX_UPDATE_ATTEMPTS: Final = 100


@dataclass(slots=True)
class Update(Generic[T]):
    """One :meth:`Cache.update` call; see its docstring for the contract."""

    parts: Parts
    namespace: Namespace[T]
    stats: NamespaceStats
    full: str
    ttl: float | None

    async def run(self, change: Callable[[T | None], T | None]) -> T | None:
        delay = 0.001
        for _ in range(_MAX_UPDATE_ATTEMPTS):
            start = _now()
            try:
                raw = await self.parts.store.get(self.full)
            except Exception as exc:
                raise self._failed(exc) from exc
            found = self.parts.stored.inspect(self.namespace, self.stats, raw)
            current = found.value if found.state is State.FRESH else None
            new = change(current)
            if new is current and (current is not None or raw is None):
                return current  # unchanged (or absent and still to be absent): nothing to write
            done = await self._write(found, new)
            self.stats.operations.record(_now() - start)
            if done:
                return new
            self.stats.sets_rejected += 1
            await asyncio.sleep(self.parts.stored.random.uniform(0, delay))  # spread contenders
            delay = min(delay * 2, 0.05)
        raise BackendError(
            f"cache update of {self.namespace.name} gave up: the entry was changed by other "
            f"writers {_MAX_UPDATE_ATTEMPTS} times in a row; retry later"
        )

    async def _write(self, found: Found[T], new: T | None) -> bool:
        """Replace what ``found`` saw with ``new`` (``None`` deletes); False if it changed."""
        data, lifetime = None, 1.0
        if new is not None:
            try:
                data, lifetime = self.parts.stored.encode(self.namespace, new, self.ttl, 0.0)
            except Exception as exc:
                self.parts.failures.not_encoded(self.namespace, self.stats, exc)
                raise
        store = self.parts.store
        try:
            if found.raw is None:
                # Nothing to compare with: create it only if it is still absent.
                assert data is not None
                done = await store.add(self.full, data, lifetime) is None
            elif found.entry is not None:  # every write has a new random write id
                done = await store.replace_if(
                    self.full, found.entry.write_id, WRITE_ID_OFFSET, data, lifetime
                )
            else:  # a lease or undecodable bytes: replace that very value
                done = await store.replace_if(self.full, found.raw, 0, data, lifetime)
        except Exception as exc:
            raise self._failed(exc) from exc
        finally:
            self.parts.l1.invalidate([self.full])
        if done:
            if data is None:
                self.stats.invalidations += 1
            else:
                self.stats.sets += 1
        return done

    def _failed(self, exc: Exception) -> BackendError:
        self.parts.failed(self.stats, "update", exc)
        if isinstance(exc, BackendError):
            return exc
        return BackendError(f"cache update failed: {exc}")
