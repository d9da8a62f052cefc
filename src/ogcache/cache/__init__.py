"""ogcache's cache engine: namespaces, batch operations, cache-aside loading and statistics.

It knows nothing of the application built on it. Typical use::

    from ogcache.cache import Cache, Namespace, create_backend

    cache = Cache(create_backend("redis://127.0.0.1:6379/0"), prefix="myapp")
    users = Namespace("user", ttl=300)
    user = await cache.get_or_load(users, users.key(user_id), lambda: load_user(user_id))
    await cache.delete(users, users.key(user_id))   # after every write of that user
"""

from ogcache.cache.backend import BackendInfo, CacheBackend, KeyCount
from ogcache.cache.backends import BackendOptions, MemoryBackend, RedisBackend, create_backend
from ogcache.cache.batch_decorator import CachedManyFunction, CacheManyDecorator, cached_many
from ogcache.cache.cache import Cache, CacheReport
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
from ogcache.cache.missing import MISSING, Missing
from ogcache.cache.namespace import Namespace
from ogcache.cache.stats import LatencySummary, NamespaceStatsSnapshot

__all__ = [
    "MISSING",
    "BackendBusyError",
    "BackendError",
    "BackendInfo",
    "BackendOptions",
    "Cache",
    "CacheBackend",
    "CacheConfigurationError",
    "CacheDecorator",
    "CacheError",
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
    "MemoryBackend",
    "Missing",
    "ModelCodec",
    "Namespace",
    "NamespaceStatsSnapshot",
    "RedisBackend",
    "cached",
    "cached_many",
    "create_backend",
]
