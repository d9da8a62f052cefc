"""The contract every cache store implements: a small set of async byte-level commands.

Backends know nothing of namespaces, codecs or statistics; the :class:`~ogcache.cache.Cache`
front end adds those around every call. Keys are full keys (application prefix included);
values are bytes; TTLs are seconds (fractions allowed). A backend translates its driver's
errors into :class:`~ogcache.cache.exceptions.BackendError` in one place.

A new store is a class implementing :class:`CacheBackend` and, to be chosen by URL, one
:func:`~ogcache.cache.backends.register_backend` call for its scheme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ogcache.cache.exceptions import CacheConfigurationError

__all__ = ["BackendInfo", "BackendOptions", "CacheBackend", "KeyCount"]


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """Tuning shared by all stores; each store reads the options that apply to it.

    Every networked call is bounded: ``connect_timeout`` to connect, ``timeout`` for an
    answer, ``pool_timeout`` for a free connection (of at most ``max_connections``).
    ``scan_batch`` is the ``COUNT`` of each ``SCAN`` (prefix clearing and counting).
    """

    timeout: float = 0.5
    connect_timeout: float = 0.5
    max_connections: int = 64
    pool_timeout: float = 1.0
    scan_batch: int = 1000
    memory_max_entries: int = 10_000
    memory_max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for option in ("timeout", "connect_timeout", "pool_timeout"):
            if not getattr(self, option) > 0:
                raise CacheConfigurationError(f"backend option {option} must be > 0 seconds")
        for option in ("max_connections", "scan_batch", "memory_max_entries", "memory_max_bytes"):
            if getattr(self, option) < 1:
                raise CacheConfigurationError(f"backend option {option} must be >= 1")


@dataclass(frozen=True, slots=True)
class KeyCount:
    """How many keys match a prefix. ``complete`` is False when counting stopped at its limit."""

    count: int
    complete: bool


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What a backend can tell about itself; ``None`` where it cannot tell."""

    backend: str
    memory_used_bytes: int | None = None
    memory_limit_bytes: int | None = None
    eviction_policy: str | None = None


@runtime_checkable
class CacheBackend(Protocol):
    """Async byte store with TTLs. Each ``_many`` call is one round trip to the store."""

    name: str

    async def get(self, key: str) -> bytes | None:
        """The value, or ``None`` when absent or expired."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values in the order of ``keys``; ``None`` for each absent one."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds, replacing any previous value."""
        ...

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """Store ``(key, value, ttl)`` triples."""
        ...

    async def add(self, key: str, value: bytes, ttl: float) -> bytes | None:
        """Store ``value`` only if ``key`` is absent (atomically).

        Returns ``None`` when it was stored, else the value already there (left unchanged).
        """
        ...

    async def replace_if(
        self, key: str, expected: bytes, offset: int, value: bytes | None, ttl: float
    ) -> bool:
        """Compare-and-set, atomically: if the stored value holds ``expected`` at byte
        ``offset``, replace it with ``value`` for ``ttl`` seconds (delete it if ``value`` is
        ``None``) and return True; otherwise change nothing and return False. An empty
        ``expected`` never matches."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys``; the number that existed."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key that starts with the literal ``prefix``, in bounded batches."""
        ...

    async def count_prefix(self, prefix: str, limit: int) -> KeyCount:
        """Count keys starting with the literal ``prefix``, looking at no more than ``limit``."""
        ...

    async def info(self) -> BackendInfo:
        """Memory use and limits, where the store can tell."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; raise ``BackendError`` otherwise."""
        ...

    async def close(self) -> None:
        """Release connections. The backend must not be used afterwards."""
        ...
