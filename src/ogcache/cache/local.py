"""The in-process tier (L1): decoded values in this process's memory, in front of the store.

A hit here costs a dictionary lookup instead of a network round trip, so it is only safe
while this process learns about every change made anywhere else. That is the job of an
:class:`~ogcache.cache.invalidation.InvalidationFeed`; the cache front end serves from this
tier only while its feed says it is live, and empties it whenever the feed reconnects.

Races with the feed are closed by *generations*: before reading the store, a caller takes a
:meth:`LocalTier.token` for the key; an invalidation of any key in the same stripe (or of
everything) bumps the generation, and :meth:`LocalTier.put` refuses a value read under an
older token. So a value read from the store before an invalidation was processed here is
never kept after it, whichever of the reply and the notification arrives first.

Bounded by entries and by bytes (the stored payload's size; the decoded object is larger,
by a roughly constant factor), least recently used first out; each entry also expires.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from ogcache.cache.missing import MISSING

__all__ = ["LocalStats", "LocalTier"]

_STRIPES: Final = 4096  # generation counters, indexed by the key's hash
_MASK: Final = _STRIPES - 1


@dataclass(frozen=True, slots=True)
class LocalStats:
    entries: int
    bytes: int
    max_entries: int
    max_bytes: int
    evictions: int
    invalidations: int
    flushes: int


class LocalTier:
    """A bounded LRU of ``key -> (expires_at, value, size)`` with generation tokens."""

    __slots__ = (
        "_bytes",
        "_clock",
        "_entries",
        "_epoch",
        "_stripes",
        "evictions",
        "flushes",
        "invalidations",
        "max_bytes",
        "max_entries",
    )

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 32 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Any, int]] = OrderedDict()
        self._bytes = 0
        self._stripes = [0] * _STRIPES
        self._epoch = 0
        self.evictions = 0
        self.invalidations = 0
        self.flushes = 0

    def token(self, key: str) -> int:
        """The key's generation now; pass it to :meth:`put` after reading the store."""
        return (self._epoch << 32) + self._stripes[hash(key) & _MASK]

    def get(self, key: str) -> Any:
        """The value, or :data:`MISSING`."""
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        if entry[0] <= self._clock():
            self._drop(key)
            return MISSING
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: str, value: Any, size: int, ttl: float, token: int) -> bool:
        """Keep ``value`` for ``ttl`` seconds unless ``key`` was invalidated since ``token``."""
        if ttl <= 0 or size > self.max_bytes or token != self.token(key):
            return False
        self._drop(key)
        self._entries[key] = (self._clock() + ttl, value, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped
            self.evictions += 1
        return True

    def invalidate(self, keys: Iterable[str]) -> None:
        """Forget ``keys`` and refuse values of their stripes read before now."""
        stripes = self._stripes
        for key in keys:
            stripes[hash(key) & _MASK] += 1
            if key in self._entries:
                self._drop(key)
                self.invalidations += 1

    def flush(self) -> None:
        """Forget everything and refuse every value read before now."""
        self._epoch += 1
        self._entries.clear()
        self._bytes = 0
        self.flushes += 1

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[2]

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> LocalStats:
        return LocalStats(
            entries=len(self._entries),
            bytes=self._bytes,
            max_entries=self.max_entries,
            max_bytes=self.max_bytes,
            evictions=self.evictions,
            invalidations=self.invalidations,
            flushes=self.flushes,
        )
