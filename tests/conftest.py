"""Fixtures shared by every test: the servers, and the cache over every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import pytest

from ogcache.cache import Cache, CacheBackend, MemoryBackend, RedisBackend
from tests.support.servers import Servers, ServerUnavailable


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    found = Servers()
    yield found
    found.close()


@pytest.fixture(scope="session")
def redis_url(servers: Servers) -> str:
    try:
        return servers.redis_url()
    except ServerUnavailable as exc:
        pytest.exit(str(exc), returncode=3)


@pytest.fixture(scope="session")
def postgres_url(servers: Servers) -> str:
    try:
        return servers.database_url()
    except ServerUnavailable as exc:
        pytest.exit(str(exc), returncode=3)


def unique_prefix() -> str:
    """A keyspace of the test's own, so tests never see each other's keys in a shared Redis."""
    return f"test-{uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[CacheBackend]:
    """Each test that uses it runs once per backend."""
    store: CacheBackend
    if request.param == "memory":
        store = MemoryBackend()
    else:
        store = RedisBackend(request.getfixturevalue("redis_url"))
    yield store
    await store.close()


@pytest.fixture
async def cache(backend: CacheBackend) -> AsyncIterator[Cache]:
    instance = Cache(backend, prefix=unique_prefix())
    yield instance
    await instance.clear()
