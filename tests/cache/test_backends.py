from __future__ import annotations

import pytest

from ogcache.cache import (
    Cache,
    CacheConfigurationError,
    MemoryBackend,
    RedisBackend,
    create_backend,
)
from ogcache.cache.backend import BackendOptions


async def test_no_url_means_the_memory_backend() -> None:
    assert isinstance(create_backend(None), MemoryBackend)
    assert isinstance(create_backend("memory://"), MemoryBackend)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6380/1", "unix:///tmp/redis.sock"]
)
async def test_redis_urls_mean_the_redis_backend(url: str) -> None:
    backend = create_backend(url)
    assert isinstance(backend, RedisBackend)
    await backend.close()


def test_an_unknown_scheme_names_the_valid_ones() -> None:
    with pytest.raises(CacheConfigurationError, match=r"memory://.*redis://"):
        create_backend("memcached://127.0.0.1")


def test_bad_redis_options_are_rejected() -> None:
    with pytest.raises(CacheConfigurationError, match="timeout"):
        RedisBackend("redis://127.0.0.1", BackendOptions(timeout=0))


@pytest.mark.parametrize("prefix", ["", "has:colon", "sp ace", "x" * 65])
def test_application_prefix_is_validated(prefix: str) -> None:
    with pytest.raises(CacheConfigurationError, match="prefix"):
        Cache(MemoryBackend(), prefix=prefix)
