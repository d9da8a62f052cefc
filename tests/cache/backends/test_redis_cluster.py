"""The Redis Cluster backend against a real 3-primary cluster: slots, primaries, round trips.

The whole cache suite also runs on the cluster (the ``backend`` fixture); these tests check
what only a cluster has: keys spread over several primaries.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

from ogcache.cache import (
    BackendBusyError,
    BackendError,
    Cache,
    CacheConfigurationError,
    Namespace,
    Policy,
    create_backend,
)
from ogcache.cache.backend import BackendOptions
from ogcache.cache.backends.redis_cluster import RedisClusterBackend, parse_cluster_url
from tests.conftest import unique_prefix
from tests.support.cluster import RedisClusterProcesses, start_cluster
from tests.support.servers import free_port

ITEMS = Namespace("item", ttl=60)


def owners(cluster: RedisClusterProcesses, keys: Sequence[str]) -> dict[int, list[str]]:
    """The keys each primary (by port) owns, as the cluster itself says (CLUSTER KEYSLOT)."""
    with cluster.node(cluster.ports[0]) as node:
        ranges = [
            (int(start), int(end), int(primary[1]))
            for start, end, primary, *_ in node.execute_command("CLUSTER SLOTS")
        ]
        pipe = node.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("CLUSTER KEYSLOT", key)
        slots = pipe.execute()
    found: dict[int, list[str]] = {port: [] for port in cluster.ports}
    for key, slot in zip(keys, slots, strict=True):
        port = next(port for start, end, port in ranges if start <= int(slot) <= end)
        found[port].append(key)
    return found


def keys_on_each_node(cluster: RedisClusterProcesses, prefix: str) -> dict[int, int]:
    counts = {}
    for port in cluster.ports:
        with cluster.node(port) as node:
            counts[port] = sum(1 for _ in node.scan_iter(match=f"{prefix}*", count=1000))
    return counts


@pytest.fixture
async def cluster_cache(redis_cluster: RedisClusterProcesses) -> AsyncIterator[Cache]:
    cache = Cache(RedisClusterBackend(redis_cluster.url), prefix=unique_prefix())
    await cache.ping()
    yield cache
    await cache.clear()
    await cache.close()


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """Network writes (one per round trip: a pipeline is one write) by server port."""
    counted: Counter[int] = Counter()
    send = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        counted[self.port] += 1  # type: ignore[attr-defined]
        await send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return counted


async def test_a_new_connection_sends_nothing_before_its_first_command(
    cluster_cache: Cache,
) -> None:
    """As on a single node (no HELLO, no CLIENT SETINFO): a round trip each, per node."""
    backend = cluster_cache.backend
    assert isinstance(backend, RedisClusterBackend)
    info = await backend.client.client_info()
    assert info["resp"] == "2"
    assert info.get("lib-name", "") == ""


async def test_a_batch_spreads_over_every_primary_and_is_read_written_and_deleted(
    cluster_cache: Cache, redis_cluster: RedisClusterProcesses
) -> None:
    cache = cluster_cache
    ids = [str(i) for i in range(100)]
    by_node = owners(redis_cluster, [cache.full_key(ITEMS, i) for i in ids])
    assert all(by_node.values()), by_node  # every primary owns some keys of the batch

    await cache.set_many(ITEMS, {i: {"i": int(i)} for i in ids})
    assert keys_on_each_node(redis_cluster, cache.prefix) == {p: len(k) for p, k in by_node.items()}
    assert await cache.get_many(ITEMS, [*ids, "absent"]) == {i: {"i": int(i)} for i in ids}

    await cache.delete_many(ITEMS, ids[:50])
    assert await cache.get_many(ITEMS, ids) == {i: {"i": int(i)} for i in ids[50:]}
    assert await cache.backend.delete_many([cache.full_key(ITEMS, i) for i in ids]) == 50
    assert set(keys_on_each_node(redis_cluster, cache.prefix).values()) == {0}


async def test_a_batch_of_100_keys_is_one_round_trip_per_primary(
    cluster_cache: Cache, redis_cluster: RedisClusterProcesses, writes: Counter[int]
) -> None:
    cache = cluster_cache
    ids = [str(i) for i in range(100)]
    await cache.set_many(ITEMS, {i: i for i in ids})  # every node's connection is open now
    one_each = dict.fromkeys(redis_cluster.ports, 1)

    writes.clear()
    await cache.get_many(ITEMS, ids)
    assert writes == one_each

    writes.clear()
    await cache.set_many(ITEMS, {i: -int(i) for i in ids})
    assert writes == one_each

    writes.clear()
    await cache.delete_many(ITEMS, ids)
    assert writes == one_each


async def test_clear_prefix_removes_keys_on_every_primary(
    cluster_cache: Cache, redis_cluster: RedisClusterProcesses
) -> None:
    cache = cluster_cache
    other = Namespace("other", ttl=60)
    await cache.set_many(ITEMS, {str(i): i for i in range(300)})
    await cache.set_many(other, {str(i): i for i in range(30)})
    before = keys_on_each_node(redis_cluster, f"{cache.prefix}:item:")
    assert all(before.values())
    assert sum(before.values()) == 300

    assert await cache.clear_prefix("item:") == 300
    assert set(keys_on_each_node(redis_cluster, f"{cache.prefix}:item:").values()) == {0}
    assert len(await cache.get_many(other, [str(i) for i in range(30)])) == 30

    assert await cache.clear() == 30
    assert set(keys_on_each_node(redis_cluster, cache.prefix).values()) == {0}


async def test_count_keys_counts_across_primaries(
    cluster_cache: Cache, redis_cluster: RedisClusterProcesses
) -> None:
    cache = cluster_cache
    await cache.set_many(ITEMS, {str(i): i for i in range(250)})
    assert all(keys_on_each_node(redis_cluster, cache.prefix).values())
    counted = await cache.count_keys()
    assert (counted.count, counted.complete) == (250, True)


async def test_count_keys_stops_at_its_bound_across_primaries(
    redis_cluster: RedisClusterProcesses,
) -> None:
    cache = Cache(
        RedisClusterBackend(redis_cluster.url, BackendOptions(scan_batch=10)),
        prefix=unique_prefix(),
        policy=Policy(key_count_limit=10),
    )
    try:
        await cache.set_many(ITEMS, {str(i): i for i in range(100)})
        counted = await cache.count_keys()
        assert not counted.complete
        assert counted.count < 100
    finally:
        await cache.clear()
        await cache.close()


async def test_leases_and_compare_and_set_work_on_every_primary(
    cluster_cache: Cache, redis_cluster: RedisClusterProcesses
) -> None:
    cache = cluster_cache
    ids = [str(i) for i in range(30)]
    by_node = owners(redis_cluster, [cache.full_key(ITEMS, i) for i in ids])
    one_per_node = [full.rsplit(":", 1)[1] for full in (keys[0] for keys in by_node.values())]
    assert len(one_per_node) == 3
    for port in redis_cluster.ports:  # a primary that has never seen the scripts: NOSCRIPT
        with redis_cluster.node(port) as node:
            node.script_flush()

    loads: Counter[str] = Counter()
    twin = Cache(cache.backend, prefix=cache.prefix)  # type: ignore[arg-type]  # another process

    def loader(key: str) -> Any:
        async def load() -> str:
            loads[key] += 1
            await asyncio.sleep(0.02)
            return f"value of {key}"

        return load

    for key in one_per_node:
        results = await asyncio.gather(
            *(c.get_or_load(ITEMS, key, loader(key)) for c in (cache, twin) for _ in range(10))
        )
        assert results == [f"value of {key}"] * 20
    assert loads == dict.fromkeys(one_per_node, 1)

    backend = cache.backend
    for key in one_per_node:
        full = cache.full_key(ITEMS, f"cas-{key}")
        assert await backend.add(full, b"lease-1", 5) is None
        assert await backend.add(full, b"lease-2", 5) == b"lease-1"
        assert not await backend.replace_if(full, b"lease-2", 0, b"new", 5)
        assert await backend.replace_if(full, b"lease-1", 0, b"value", 5)
        assert await backend.get(full) == b"value"
        assert not await backend.replace_if(full, b"lu", 1, None, 5)  # "value"[1:3] is "al"
        assert await backend.replace_if(full, b"al", 1, None, 5)
        assert await backend.get(full) is None


async def test_info_adds_up_the_primaries(redis_cluster: RedisClusterProcesses) -> None:
    backend = RedisClusterBackend(redis_cluster.url)

    def configure(maxmemory: str, policy: str, port: int | None = None) -> None:
        for each in [port] if port else redis_cluster.ports:
            with redis_cluster.node(each) as node:
                node.config_set("maxmemory", maxmemory)
                node.config_set("maxmemory-policy", policy)

    original = {}
    for port in redis_cluster.ports:
        with redis_cluster.node(port) as node:
            found = node.config_get("maxmemory*")
            original[port] = (found["maxmemory"], found["maxmemory-policy"])
    try:
        info = await backend.info()
        used = []
        for port in redis_cluster.ports:
            with redis_cluster.node(port) as node:
                used.append(node.info("memory")["used_memory"])
        assert info.backend == "redis-cluster"
        assert info.memory_used_bytes is not None
        assert 0.5 * sum(used) < info.memory_used_bytes < 2 * sum(used)
        assert info.memory_limit_bytes is None  # no limit on any primary

        configure("64mb", "allkeys-lru")
        info = await backend.info()
        assert info.memory_limit_bytes == 3 * 64 * 1024 * 1024
        assert info.eviction_policy == "allkeys-lru"

        configure("64mb", "volatile-lru", port=redis_cluster.ports[0])
        assert (await backend.info()).eviction_policy is None  # not the same everywhere

        configure("0", "allkeys-lru", port=redis_cluster.ports[1])
        assert (await backend.info()).memory_limit_bytes is None  # one primary is unlimited
    finally:
        for port, (maxmemory, policy) in original.items():
            configure(maxmemory, policy, port=port)
        await backend.close()


async def test_a_thousand_concurrent_misses_wait_for_a_connection_instead_of_failing(
    redis_cluster: RedisClusterProcesses,
) -> None:
    # Timeouts far above the burst's length: the test is about waiting (see test_redis).
    backend = RedisClusterBackend(
        redis_cluster.url,
        BackendOptions(max_connections=4, pool_timeout=30, timeout=10, connect_timeout=10),
    )
    cache = Cache(backend, prefix=unique_prefix())

    async def load() -> int:
        await asyncio.sleep(0)
        return 1

    try:
        results = await asyncio.gather(
            *(cache.get_or_load(ITEMS, str(i), load) for i in range(1000))
        )
        assert results == [1] * 1000
        assert cache.stats()["item"].errors == 0
        await cache.clear()
    finally:
        await cache.close()


async def test_a_full_pool_fails_after_pool_timeout_not_at_once(
    redis_cluster: RedisClusterProcesses,
) -> None:
    backend = RedisClusterBackend(
        redis_cluster.url, BackendOptions(max_connections=1, pool_timeout=0.1)
    )
    await backend.ping()
    async with backend.call("hold the only connection"):
        started = time.monotonic()
        with pytest.raises(BackendBusyError, match="pool_timeout"):
            await backend.get("k")
        assert 0.09 < time.monotonic() - started < 1
    assert await backend.get("k") is None
    await backend.close()


# --- URLs and failures ------------------------------------------------------------------


def test_cluster_urls_name_every_seed_node_and_their_options() -> None:
    nodes, options = parse_cluster_url(
        "redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002/"
    )
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)]
    assert options == {"username": "u", "password": "p@ss"}
    nodes, options = parse_cluster_url("rediss+cluster://h:1/0?ssl_cert_reqs=none")
    assert nodes == [("h", 1)]
    assert options == {"ssl": True, "ssl_cert_reqs": "none"}


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://h:1/2",  # a cluster has only database 0
        "redis+cluster://h:1,:2/",
        "redis+cluster://h:port/",
        "redis+cluster://h:1/?no_such_option=1",
    ],
)
def test_bad_cluster_urls_are_rejected(url: str) -> None:
    with pytest.raises(CacheConfigurationError, match="redis-cluster"):
        RedisClusterBackend(url)


async def test_the_cluster_schemes_mean_the_cluster_backend() -> None:
    for url in ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/", "rediss+cluster://h:7000"):
        backend = create_backend(url)
        assert isinstance(backend, RedisClusterBackend)
        await backend.close()
    with pytest.raises(CacheConfigurationError, match="timeout"):
        RedisClusterBackend("redis+cluster://h:1", BackendOptions(timeout=0))


async def _load() -> str:
    return "from the database"


async def test_an_unreachable_cluster_serves_from_the_loader_and_admin_calls_raise() -> None:
    backend = RedisClusterBackend(f"redis+cluster://127.0.0.1:{free_port()}/")
    cache = Cache(backend, prefix="t")
    started = time.monotonic()
    assert await cache.get_or_load(ITEMS, "k", _load) == "from the database"
    assert cache.stats()["item"].errors == 1
    assert time.monotonic() - started < 1
    for call in (backend.ping, backend.info, lambda: backend.delete_prefix("t:")):
        with pytest.raises(BackendError, match="redis"):
            await call()
    await cache.close()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterProcesses]:
    # A node timeout longer than any test: the others never declare the stopped one failed.
    cluster = start_cluster(tmp_path, extra_args=("--cluster-node-timeout", "60000"))
    yield cluster
    cluster.stop()


@pytest.mark.slow
async def test_a_stopped_primary_fails_only_its_own_keys_and_briefly(
    own_cluster: RedisClusterProcesses,
) -> None:
    # A second per call: a stopped primary refuses at once, and a healthy one answers in a
    # millisecond, also on a machine busy enough to stretch a tight timeout.
    backend = RedisClusterBackend(own_cluster.url, BackendOptions(timeout=1, connect_timeout=1))
    cache = Cache(backend, prefix="t", breaker=None)  # count errors, never skip
    ids = [str(i) for i in range(60)]
    await cache.set_many(ITEMS, dict.fromkeys(ids, "cached"))
    by_node = owners(own_cluster, [cache.full_key(ITEMS, i) for i in ids])
    lost = {full.rsplit(":", 1)[1] for full in by_node[own_cluster.ports[0]]}
    kept = [i for i in ids if i not in lost]

    own_cluster.processes[0].stop()
    started = time.monotonic()
    for i in ids:
        expected = "from the database" if i in lost else "cached"
        assert await cache.get_or_load(ITEMS, i, _load) == expected, i
    elapsed = time.monotonic() - started
    stats = cache.stats()["item"]
    assert stats.loads == len(lost)
    assert stats.errors >= len(lost)
    assert elapsed < len(lost) * 2 * 1 + 1  # each failure bounded, no retry loops

    # Batches that touch the stopped primary fail, and fail alone: calls in flight to the
    # healthy primaries at the same time all succeed.
    failed_batches = 0

    async def batches() -> None:
        nonlocal failed_batches
        for _ in range(10):
            with pytest.raises(BackendError):
                await backend.get_many([cache.full_key(ITEMS, i) for i in ids])
            failed_batches += 1
            await asyncio.sleep(0.005)

    async def healthy_reads() -> list[bytes | None]:
        return [await backend.get(cache.full_key(ITEMS, kept[n % len(kept)])) for n in range(50)]

    *reads, _ = await asyncio.gather(*(healthy_reads() for _ in range(10)), batches())
    assert failed_batches == 10
    assert all(value is not None for values in reads for value in values)

    with pytest.raises(BackendError):
        await backend.ping()
    await cache.close()
