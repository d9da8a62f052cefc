"""ogcache's cache engine: namespaces, batch operations, cache-aside loading and statistics.

It knows nothing of the application built on it. Typical use::

    from ogcache.cache import Cache, Namespace, create_backend

    users = Namespace("user", ttl=300)
    async with Cache(create_backend("redis://127.0.0.1:6379/0"), prefix="myapp") as cache:
        user = await cache.get_or_load(users, users.key(user_id), lambda: load_user(user_id))
        await cache.delete(users, users.key(user_id))   # after every write of that user
"""

from ogcache.cache.backend import BackendInfo, BackendOptions, CacheBackend, KeyCount
from ogcache.cache.backends import (
    BackendFactory,
    MemoryBackend,
    RedisBackend,
    backend_schemes,
    create_backend,
    register_backend,
)
from ogcache.cache.batch_decorator import CachedManyFunction, CacheManyDecorator, cached_many
from ogcache.cache.breaker import BreakerSettings, BreakerState, BreakerStats
from ogcache.cache.cache import Cache
from ogcache.cache.codec import Codec, JsonCodec, ModelCodec
from ogcache.cache.decorator import CacheDecorator, CachedFunction, cached
from ogcache.cache.exceptions import (
    BackendBusyError,
    BackendError,
    CacheConfigurationError,
    CacheError,
    DecodeError,
    InvalidKeyError,
)
from ogcache.cache.l1 import LocalSettings, ReadScope
from ogcache.cache.local import LocalStats
from ogcache.cache.missing import MISSING, Missing
from ogcache.cache.namespace import Namespace
from ogcache.cache.policy import Policy
from ogcache.cache.protocol import CacheLike
from ogcache.cache.report import CacheReport
from ogcache.cache.stats import LatencySummary, NamespaceStatsSnapshot
from ogcache.cache.verifier import VerifierSettings

__all__ = [
    "MISSING",
    "BackendBusyError",
    "BackendError",
    "BackendFactory",
    "BackendInfo",
    "BackendOptions",
    "BreakerSettings",
    "BreakerState",
    "BreakerStats",
    "Cache",
    "CacheBackend",
    "CacheConfigurationError",
    "CacheDecorator",
    "CacheError",
    "CacheLike",
    "CacheManyDecorator",
    "CacheReport",
    "CachedFunction",
    "CachedManyFunction",
    "Codec",
    "DecodeError",
    "InvalidKeyError",
    "JsonCodec",
    "KeyCount",
    "LatencySummary",
    "LocalSettings",
    "LocalStats",
    "MemoryBackend",
    "Missing",
    "ModelCodec",
    "Namespace",
    "NamespaceStatsSnapshot",
    "Policy",
    "ReadScope",
    "RedisBackend",
    "VerifierSettings",
    "backend_schemes",
    "cached",
    "cached_many",
    "create_backend",
    "register_backend",
]
