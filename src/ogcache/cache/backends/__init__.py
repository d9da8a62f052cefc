"""Cache stores, one module each, chosen by URL scheme.

``memory://`` (or no URL) is the in-process store; ``redis://``, ``rediss://`` and ``unix://``
name a Redis server. Adding a store: a module here implementing
:class:`~ogcache.cache.backend.CacheBackend` and one line in ``_FACTORIES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ogcache.cache.backend import CacheBackend
from ogcache.cache.backends.memory import MemoryBackend
from ogcache.cache.backends.redis import RedisBackend
from ogcache.cache.backends.upstash import UpstashBackend
from ogcache.cache.exceptions import CacheConfigurationError

__all__ = [
    "BackendOptions",
    "MemoryBackend",
    "RedisBackend",
    "UpstashBackend",
    "create_backend",
    "create_upstash_backend",
]


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """Tuning shared by all stores; each store reads the options that apply to it."""

    timeout: float = 0.5
    connect_timeout: float = 0.5
    max_connections: int = 64
    pool_timeout: float = 1.0
    memory_max_entries: int = 10_000
    memory_max_bytes: int = 64 * 1024 * 1024


def _memory(url: str, options: BackendOptions) -> CacheBackend:
    return MemoryBackend(max_entries=options.memory_max_entries, max_bytes=options.memory_max_bytes)


def _network(options: BackendOptions) -> dict[str, Any]:
    """The options every networked store takes."""
    return {
        "timeout": options.timeout,
        "connect_timeout": options.connect_timeout,
        "max_connections": options.max_connections,
        "pool_timeout": options.pool_timeout,
    }


def _redis(url: str, options: BackendOptions) -> CacheBackend:
    return RedisBackend(url, **_network(options))


def _redis_cluster(url: str, options: BackendOptions) -> CacheBackend:
    from ogcache.cache.backends.redis_cluster import RedisClusterBackend

    return RedisClusterBackend(url, **_network(options))


def _redis_sentinel(url: str, options: BackendOptions) -> CacheBackend:
    from ogcache.cache.backends.redis_sentinel import RedisSentinelBackend

    return RedisSentinelBackend(url, **_network(options))


_FACTORIES: dict[str, Callable[[str, BackendOptions], CacheBackend]] = {
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "redis+cluster": _redis_cluster,
    "rediss+cluster": _redis_cluster,
    "redis+sentinel": _redis_sentinel,
    "rediss+sentinel": _redis_sentinel,
}


def create_backend(url: str | None, options: BackendOptions | None = None) -> CacheBackend:
    """The store a URL names; ``None`` or ``""`` means the in-process memory store."""
    options = options or BackendOptions()
    if not url:
        return _memory("memory://", options)
    scheme = urlsplit(url).scheme.lower()
    factory = _FACTORIES.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in sorted(_FACTORIES))
        raise CacheConfigurationError(
            f"unsupported cache URL scheme {scheme + '://' if scheme else '(none)'}; "
            f"use one of {known}"
        )
    return factory(url, options)


def create_upstash_backend(
    url: str, token: str, options: BackendOptions | None = None
) -> CacheBackend:
    """Upstash Redis over its REST API: ``UPSTASH_REDIS_REST_URL`` and ``_TOKEN``.

    Not a URL scheme: Upstash gives an ``https://`` URL and a separate token.
    """
    return UpstashBackend(url, token, **_network(options or BackendOptions()))
