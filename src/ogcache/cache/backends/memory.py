"""In-process backend: a bounded LRU dictionary with per-entry expiry.

For a single process (the embedded ``make run`` default, tests, a local tier). Every command
runs without awaiting anything, so each is atomic with respect to other tasks of the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from ogcache.cache.backend import BackendInfo, KeyCount
from ogcache.cache.exceptions import CacheConfigurationError

__all__ = ["MemoryBackend"]

# Rough per-entry bookkeeping cost (dict slot, tuple, key object) used for the byte bound.
_ENTRY_OVERHEAD = 120


class MemoryBackend:
    """Bounded by entry count and by bytes; the least recently used entries go first."""

    name = "memory"

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise CacheConfigurationError("memory backend: max_entries must be >= 1")
        if max_bytes < 1:
            raise CacheConfigurationError("memory backend: max_bytes must be >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def _size(key: str, value: bytes) -> int:
        return len(key) + len(value) + _ENTRY_OVERHEAD

    def _live(self, key: str, now: float) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= now:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return value

    def _remove(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= self._size(key, entry[1])
        return True

    def _store(self, key: str, value: bytes, ttl: float, now: float) -> bool:
        self._remove(key)
        size = self._size(key, value)
        if size > self.max_bytes:
            return False  # a value larger than the whole cache is not cached
        self._entries[key] = (now + ttl, value)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
        return True

    async def get(self, key: str) -> bytes | None:
        return self._live(key, self._clock())

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock()
        return [self._live(key, now) for key in keys]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._store(key, value, ttl, self._clock())

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        now = self._clock()
        for key, value, ttl in items:
            self._store(key, value, ttl, now)

    async def add(self, key: str, value: bytes, ttl: float) -> bytes | None:
        now = self._clock()
        existing = self._live(key, now)
        if existing is not None:
            return existing
        self._store(key, value, ttl, now)
        return None

    async def replace_if(
        self, key: str, expected: bytes, offset: int, value: bytes | None, ttl: float
    ) -> bool:
        now = self._clock()
        current = self._live(key, now)
        if not expected or current is None or current[offset : offset + len(expected)] != expected:
            return False
        if value is None:
            return self._remove(key)
        return self._store(key, value, ttl, now)

    async def delete(self, key: str) -> bool:
        return self._remove(key)

    async def delete_many(self, keys: Sequence[str]) -> int:
        return sum(self._remove(key) for key in keys)

    async def delete_prefix(self, prefix: str) -> int:
        doomed = [key for key in self._entries if key.startswith(prefix)]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    async def count_prefix(self, prefix: str, limit: int) -> KeyCount:
        now = self._clock()
        count = 0
        for seen, (key, (expires_at, _)) in enumerate(self._entries.items(), start=1):
            if seen > limit:
                return KeyCount(count, complete=False)
            if expires_at > now and key.startswith(prefix):
                count += 1
        return KeyCount(count, complete=True)

    async def info(self) -> BackendInfo:
        return BackendInfo(
            backend=self.name,
            memory_used_bytes=self._bytes,
            memory_limit_bytes=self.max_bytes,
            eviction_policy="lru",
        )

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __repr__(self) -> str:
        return f"MemoryBackend(max_entries={self.max_entries}, max_bytes={self.max_bytes})"
