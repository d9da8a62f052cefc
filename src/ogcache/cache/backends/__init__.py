"""Cache stores, one module each, chosen by URL scheme through one registry.

``memory://`` (or no URL) is the in-process store; ``redis://``, ``rediss://`` and ``unix://``
name a Redis server; ``redis+cluster://`` a Redis Cluster; ``redis+sentinel://`` the primary of
a Sentinel set. Upstash's REST API has no scheme (an ``https://`` URL and a token):
:func:`create_upstash_backend`. A store of your own::

    register_backend("mystore", lambda url, options: MyStore(url, options))

Factories import their store when called, so a store's driver is needed only when used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ogcache.cache.backend import BackendOptions, CacheBackend
from ogcache.cache.backends.memory import MemoryBackend
from ogcache.cache.backends.redis import RedisBackend
from ogcache.cache.exceptions import CacheConfigurationError

if TYPE_CHECKING:
    from ogcache.cache.backends.upstash import UpstashBackend

__all__ = [
    "BackendFactory",
    "BackendOptions",
    "MemoryBackend",
    "RedisBackend",
    "UpstashBackend",
    "backend_schemes",
    "create_backend",
    "create_upstash_backend",
    "register_backend",
]

BackendFactory = Callable[[str, BackendOptions], CacheBackend]
"""Builds a store from its URL and the shared options."""


def _memory(url: str, options: BackendOptions) -> CacheBackend:
    return MemoryBackend(max_entries=options.memory_max_entries, max_bytes=options.memory_max_bytes)


def _redis(url: str, options: BackendOptions) -> CacheBackend:
    return RedisBackend(url, options)


def _redis_cluster(url: str, options: BackendOptions) -> CacheBackend:
    from ogcache.cache.backends.redis_cluster import RedisClusterBackend

    return RedisClusterBackend(url, options)


def _redis_sentinel(url: str, options: BackendOptions) -> CacheBackend:
    from ogcache.cache.backends.redis_sentinel import RedisSentinelBackend

    return RedisSentinelBackend(url, options)


_registry: dict[str, BackendFactory] = {}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Make ``create_backend("{scheme}://...")`` call ``factory(url, options)``.

    Schemes are case-insensitive; registering a scheme again replaces its factory.
    """
    name = scheme.lower().removesuffix("://")
    if not name or not all(c.isalnum() or c in "+-." for c in name):
        raise CacheConfigurationError(f"backend scheme {scheme!r} is not a URL scheme")
    _registry[name] = factory


def backend_schemes() -> tuple[str, ...]:
    """The URL schemes :func:`create_backend` accepts, sorted."""
    return tuple(sorted(_registry))


for _scheme, _factory in (
    ("memory", _memory),
    ("redis", _redis),
    ("rediss", _redis),
    ("unix", _redis),
    ("redis+cluster", _redis_cluster),
    ("rediss+cluster", _redis_cluster),
    ("redis+sentinel", _redis_sentinel),
    ("rediss+sentinel", _redis_sentinel),
):
    register_backend(_scheme, _factory)


def create_backend(url: str | None, options: BackendOptions | None = None) -> CacheBackend:
    """The store a URL names; ``None`` or ``""`` means the in-process memory store."""
    options = options or BackendOptions()
    if not url:
        return _memory("memory://", options)
    scheme = urlsplit(url).scheme.lower()
    factory = _registry.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in backend_schemes())
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
    from ogcache.cache.backends.upstash import UpstashBackend

    return UpstashBackend(url, token, options)


def __getattr__(name: str) -> Any:
    if name == "UpstashBackend":  # imported on first use: it needs httpx (ogcache[upstash])
        from ogcache.cache.backends.upstash import UpstashBackend

        return UpstashBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
