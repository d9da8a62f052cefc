"""Fixtures shared by every test: the servers, and the cache over every backend."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from ogcache.cache import Cache, CacheBackend, MemoryBackend, RedisBackend
from ogcache.cache.backend import BackendOptions
from ogcache.cache.backends.redis_cluster import RedisClusterBackend
from ogcache.cache.backends.upstash import UpstashBackend
from tests.support.cluster import RedisClusterProcesses, start_cluster
from tests.support.servers import RedisProcess, Servers, ServerUnavailable, start_redis
from tests.support.upstash_gateway import UpstashGateway


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
def redis_cluster(servers: Servers) -> Iterator[RedisClusterProcesses]:
    """A 3-primary Redis Cluster of the session's own, on free loopback ports."""
    directory = servers.tmp / "cluster"
    directory.mkdir()
    try:
        cluster = start_cluster(directory)
    except ServerUnavailable as exc:
        pytest.exit(str(exc), returncode=3)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def upstash(redis_url: str) -> Iterator[UpstashGateway]:
    """Upstash's REST API (the part ogcache uses) over the session's Redis, on loopback."""
    gateway = UpstashGateway(redis_url, token=secrets.token_urlsafe(24)).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def postgres_url(servers: Servers) -> str:
    try:
        return servers.database_url()
    except ServerUnavailable as exc:
        pytest.exit(str(exc), returncode=3)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own on a loopback port, to stop, hang or restart; resumed
    if left hung, then killed."""
    process = start_redis(tmp_path)
    yield process
    if process.process is not None:
        process.resume()
    process.stop()


def unique_prefix() -> str:
    """A keyspace of the test's own, so tests never see each other's keys in a shared Redis."""
    return f"test-{uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "redis", "redis-cluster", "upstash"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[CacheBackend]:
    """Each test that uses it runs once per backend."""
    store: CacheBackend
    if request.param == "memory":
        store = MemoryBackend()
    elif request.param == "redis-cluster":
        store = RedisClusterBackend(request.getfixturevalue("redis_cluster").url)
    elif request.param == "upstash":
        gateway = request.getfixturevalue("upstash")
        # The gateway is Python threads in this process: on a busy machine a burst of
        # connections to it takes longer than the 0.5 s a real Upstash is given.
        patient = BackendOptions(timeout=5, connect_timeout=5, pool_timeout=5)
        store = UpstashBackend(gateway.url, gateway.token, patient)
    else:
        store = RedisBackend(request.getfixturevalue("redis_url"))
    yield store
    await store.close()


@pytest.fixture
async def cache(backend: CacheBackend) -> AsyncIterator[Cache]:
    instance = Cache(backend, prefix=unique_prefix())
    yield instance
    await instance.clear()
