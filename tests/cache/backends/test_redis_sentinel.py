"""The Sentinel backend against a primary, a replica and a sentinel of the tests' own.

Each slow test gets a fresh set-up on free loopback ports: ``redis-server`` as primary, one
as its replica, and one ``redis-server --sentinel`` monitoring them as ``ogcache`` (quorum 1,
down after 1 s). The failover tests run a steady load of ``get_or_load``/``set``/``invalidate``
calls from several tasks across a failover and count every call that raised or returned a
wrong value: there must be none.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelManagedSSLConnection

from ogcache.cache import BackendError, Cache, CacheConfigurationError, Namespace, create_backend
from ogcache.cache.backend import BackendOptions
from ogcache.cache.backends.redis_sentinel import RedisSentinelBackend, parse_sentinel_url
from ogcache.cache.breaker import BreakerSettings, BreakerState
from tests.conftest import unique_prefix
from tests.support.servers import (
    RedisProcess,
    ServerUnavailable,
    free_port,
    wait_for_port,
)

SERVICE = "ogcache"
ITEMS = Namespace("item", ttl=60)
# Full syncs without the default 5 s wait for more replicas: set-up and re-sync in under 1 s.
REPLICATION = ("--repl-diskless-sync-delay", "0")
CLIENT_NAME = "ogcache-under-test"


# --- URL parsing (no servers) -----------------------------------------------------------------


def test_the_url_names_sentinels_service_and_database() -> None:
    sentinels, service, options = parse_sentinel_url(
        "redis+sentinel://user:se%2Fcret@10.0.0.1:5000,10.0.0.2/cache/3?sentinel_password=s"
    )
    assert sentinels == [("10.0.0.1", 5000), ("10.0.0.2", 26379)]
    assert service == "cache"
    assert options == {
        "username": "user",
        "password": "se/cret",
        "db": 3,
        "sentinel_password": "s",
    }
    assert parse_sentinel_url("redis+sentinel://h/svc")[2] == {"db": 0}
    assert parse_sentinel_url("rediss+sentinel://h:1/svc/")[2] == {"db": 0, "ssl": True}


async def test_tls_urls_use_sentinel_managed_tls_connections() -> None:
    backend = RedisSentinelBackend("rediss+sentinel://127.0.0.1/svc")
    assert backend.pool.connection_class is SentinelManagedSSLConnection
    await backend.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1:26379",  # no service
        "redis+sentinel://127.0.0.1:26379/",
        "redis+sentinel://127.0.0.1:26379/svc/zero",
        "redis+sentinel://127.0.0.1:port/svc",
        "redis+sentinel://:1/svc",
        "redis+sentinel://h/svc?socket_timeout=soon",
    ],
)
def test_invalid_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(CacheConfigurationError, match="redis-sentinel backend: invalid URL"):
        create_backend(url)


async def test_the_registry_builds_it_and_an_unreachable_sentinel_is_a_backend_error() -> None:
    backend = create_backend(f"redis+sentinel://127.0.0.1:{free_port()}/{SERVICE}")
    assert isinstance(backend, RedisSentinelBackend)
    assert repr(backend).startswith(f"RedisSentinelBackend({SERVICE} via 127.0.0.1:")
    with pytest.raises(BackendError, match="MasterNotFoundError"):
        await backend.get("k")
    await backend.close()


# --- a primary, a replica and a sentinel ------------------------------------------------------


@dataclass
class SentinelSet:
    primary: RedisProcess
    replica: RedisProcess
    sentinel_port: int
    sentinel: subprocess.Popen[bytes] | None = None
    dead_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        # An unreachable sentinel first: the backend must move on to the one that answers.
        return (
            f"redis+sentinel://127.0.0.1:{self.dead_port},127.0.0.1:{self.sentinel_port}/{SERVICE}"
        )

    def client(self, port: int) -> Redis:
        return Redis(host="127.0.0.1", port=port, socket_timeout=2)

    async def primary_port(self) -> int:
        async with self.client(self.sentinel_port) as sentinel:
            _, port = await sentinel.sentinel_get_master_addr_by_name(SERVICE)
            return int(port)

    async def replica_in_sync(self) -> bool:
        async with self.client(self.replica.port) as replica:
            return (await replica.info("replication"))["master_link_status"] == "up"

    async def sentinel_knows_the_replica(self) -> bool:
        async with self.client(self.sentinel_port) as sentinel:
            replicas = await sentinel.sentinel_slaves(SERVICE)
            return any(r["port"] == self.replica.port and not r["is_sdown"] for r in replicas)

    def start_sentinel(self, config: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.sentinel = subprocess.Popen(
            [binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", self.sentinel_port)

    def stop(self) -> None:
        if self.sentinel is not None and self.sentinel.poll() is None:
            self.sentinel.kill()
            self.sentinel.wait(timeout=10)
        self.primary.stop()
        self.replica.stop()


@pytest.fixture
async def sentinel_set(tmp_path: Path) -> AsyncIterator[SentinelSet]:
    if shutil.which("redis-server") is None:
        raise ServerUnavailable("redis-server is not installed (Debian/Ubuntu: redis-server)")
    for name in ("primary", "replica", "sentinel"):
        (tmp_path / name).mkdir()
    primary = RedisProcess(free_port(), tmp_path / "primary", REPLICATION).start()
    replica = RedisProcess(
        free_port(),
        tmp_path / "replica",
        (*REPLICATION, "--replicaof", "127.0.0.1", str(primary.port)),
    ).start()
    sentinel_port = free_port()
    config = tmp_path / "sentinel" / "sentinel.conf"  # the sentinel rewrites it
    config.write_text(
        f"port {sentinel_port}\n"
        "bind 127.0.0.1\n"
        f"dir {tmp_path / 'sentinel'}\n"
        f"logfile {tmp_path / 'sentinel' / 'sentinel.log'}\n"
        "sentinel resolve-hostnames no\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 5000\n"
    )
    servers = SentinelSet(primary, replica, sentinel_port)
    try:
        # The replica in sync first: the sentinel's first look at the primary then lists it
        # (the next one is ten seconds later).
        await _eventually(servers.replica_in_sync, "the replica to sync")
        servers.start_sentinel(config)
        await _eventually(servers.sentinel_knows_the_replica, "the sentinel to see the replica")
        yield servers
    finally:
        servers.stop()


async def _eventually(condition: Callable[[], Awaitable[bool]], what: str) -> float:
    """Seconds until ``condition()`` holds (polled); fails after 15 s."""
    started = time.monotonic()
    while time.monotonic() - started < 15:
        if await condition():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"waited 15 s for {what}")


@pytest.mark.slow
async def test_round_trips_through_sentinel(sentinel_set: SentinelSet) -> None:
    backend = create_backend(f"{sentinel_set.url}?client_name={CLIENT_NAME}")
    assert isinstance(backend, RedisSentinelBackend)
    assert backend.name == "redis-sentinel"
    try:
        await backend.set("t:a", b"1", 60)
        assert await backend.get("t:a") == b"1"
        await backend.set_many([("t:b", b"2", 60), ("t:c", b"3", 60)])
        assert await backend.get_many(["t:a", "t:b", "t:x"]) == [b"1", b"2", None]
        # The lease and the compare-and-set: the Lua scripts run on the primary.
        assert await backend.add("t:lease", b"L1-token", 60) is None
        assert await backend.add("t:lease", b"L2-other", 60) == b"L1-token"
        assert not await backend.replace_if("t:lease", b"other", 3, b"value", 60)
        assert await backend.replace_if("t:lease", b"token", 3, b"value", 60)
        assert await backend.get("t:lease") == b"value"
        assert (await backend.count_prefix("t:", 1000)).count == 4
        assert await backend.delete("t:a")
        assert await backend.delete_many(["t:b", "t:x"]) == 1
        assert await backend.delete_prefix("t:") == 2
        await backend.ping()
        assert (await backend.info()).backend == "redis-sentinel"
        # Its connections are to the primary; none to the replica.
        for port, expected in ((sentinel_set.primary.port, 1), (sentinel_set.replica.port, 0)):
            async with sentinel_set.client(port) as server:
                names = [client["name"] for client in await server.client_list()]
                assert names.count(CLIENT_NAME) == expected
        await backend.set("t:direct", b"d", 60)
        # The pool is bounded and blocking: more concurrent calls than connections wait.
        bounded = RedisSentinelBackend(sentinel_set.url, BackendOptions(max_connections=2))
        try:
            results = await asyncio.gather(*(bounded.get("t:direct") for _ in range(200)))
            assert results == [b"d"] * 200
        finally:
            await bounded.close()
    finally:
        await backend.close()


# --- failover under load --------------------------------------------------------------------


def _value(key: str) -> dict[str, str]:
    return {"key": key, "payload": "x" * 64}


@dataclass
class Load:
    """Tasks calling the cache in a loop until stopped: 70 % ``get_or_load``, 15 % ``set``,
    15 % ``invalidate``. A call that raised or returned a wrong value is a failure."""

    cache: Cache
    workers: int = 8
    keys: list[str] = field(default_factory=lambda: [f"k{i}" for i in range(40)])
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    not_stored: int = 0
    hit_times: list[float] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._worker(seed)) for seed in range(self.workers)]

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.gather(*self.tasks)

    async def _worker(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stopping.is_set():
            key = rng.choice(self.keys)
            operation = rng.random()
            self.calls += 1
            try:
                if operation < 0.7:
                    loaded: list[str] = []

                    async def load(key: str = key, loaded: list[str] = loaded) -> dict[str, str]:
                        loaded.append(key)
                        return _value(key)

                    got = await self.cache.get_or_load(ITEMS, key, load)
                    if got != _value(key):
                        self.failures.append(f"get_or_load({key}) returned {got!r}")
                    elif not loaded:
                        self.hit_times.append(time.monotonic())
                elif operation < 0.85:
                    self.not_stored += not await self.cache.set(ITEMS, key, _value(key))
                else:
                    self.not_stored += not await self.cache.invalidate([(ITEMS, key)])
            except Exception as exc:  # a data-path call must never raise
                self.failures.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.001)

    def longest_without_hits(self) -> float:
        times = sorted(self.hit_times)
        return max(later - earlier for earlier, later in itertools.pairwise(times))


async def _failover_under_load(
    servers: SentinelSet, how: str, call_timeout: float
) -> tuple[Load, Cache, str]:
    """Fail over (``SENTINEL FAILOVER`` or a killed primary) under load; a summary line."""
    cache = Cache(
        RedisSentinelBackend(
            f"{servers.url}?client_name={CLIENT_NAME}",
            BackendOptions(timeout=call_timeout, connect_timeout=call_timeout),
        ),
        prefix=unique_prefix(),
        breaker=BreakerSettings(cool_down=0.5),
    )
    old = servers.primary.port
    assert await servers.primary_port() == old
    load = Load(cache)
    load.start()
    await asyncio.sleep(1.0)  # warm: keys cached, pooled connections to the old primary
    assert cache.stats()["item"].hits > 0
    started = time.monotonic()
    if how == "SENTINEL FAILOVER":
        async with servers.client(servers.sentinel_port) as sentinel:
            assert await sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE) == b"OK"
    else:
        servers.primary.stop()  # SIGKILL

    async def moved() -> bool:
        return await servers.primary_port() != old

    switched = await _eventually(moved, "the sentinel to promote the replica")
    await asyncio.sleep(1.5)  # the load goes on after the switch
    if how == "SENTINEL FAILOVER":
        # Sentinel demotes the old primary only seconds later: until then it takes writes
        # (lost when it re-syncs). The backend has left it already, though its load goes on.
        async with servers.client(old) as old_primary:
            assert (await old_primary.execute_command("ROLE"))[0] == b"master"
            ours = [c for c in await old_primary.client_list() if c["name"] == CLIENT_NAME]
            assert ours == [], "connections to the old primary are still open"
    await asyncio.sleep(0.5)
    await load.stop()
    new = await servers.primary_port()
    assert new == servers.replica.port

    async def hit() -> bool:  # a value set now is a hit: the loader is not called
        async def must_not_load() -> dict[str, str]:
            return {"loaded": "yes"}

        await cache.set(ITEMS, "after", _value("after"))
        return await cache.get_or_load(ITEMS, "after", must_not_load) == _value("after")

    hits_again = await _eventually(hit, "a hit")
    async with servers.client(new) as primary:  # written to the new primary (the old replica)
        assert (await primary.execute_command("ROLE"))[0] == b"master"
        assert await primary.exists(cache.full_key(ITEMS, "after"))
    stats, breaker = cache.stats()["item"], cache.breaker_stats()
    assert breaker is not None
    summary = (
        f"{how}: {load.calls} calls in {time.monotonic() - started + 1:.1f} s, "
        f"{len(load.failures)} failed, {load.not_stored} writes not stored; backend errors "
        f"{stats.errors}, short-circuited {stats.short_circuited}, breaker trips {breaker.trips}, "
        f"open {breaker.open_seconds:.2f} s; new primary after {switched:.2f} s, longest "
        f"stretch without a hit {load.longest_without_hits():.2f} s, a set then a hit after "
        f"the load {hits_again:.3f} s"
    )
    assert load.failures == [], summary
    await cache.clear()
    await cache.close()
    return load, cache, summary


@pytest.mark.slow
async def test_sentinel_failover_mid_load_fails_no_calls(
    sentinel_set: SentinelSet, capsys: pytest.CaptureFixture[str]
) -> None:
    # Timeouts ten times a busy machine's slowest healthy answer: this test is about errors
    # of logic (a call sent to a demoted primary), not about how fast a loaded loop answers.
    load, cache, summary = await _failover_under_load(sentinel_set, "SENTINEL FAILOVER", 3.0)
    with capsys.disabled():
        print(f"\n{summary}")
    # A planned failover costs nothing: calls in flight finish on the old primary, the next
    # ones go to the new one.
    assert cache.stats()["item"].errors == 0, summary
    assert (breaker := cache.breaker_stats()) is not None
    assert breaker.trips == 0, summary
    assert load.not_stored == 0, summary


@pytest.mark.slow
async def test_a_killed_primary_mid_load_fails_no_calls(
    sentinel_set: SentinelSet, capsys: pytest.CaptureFixture[str]
) -> None:
    _, cache, summary = await _failover_under_load(sentinel_set, "primary killed", 0.3)
    with capsys.disabled():
        print(f"\n{summary}")
    # Until the sentinel promotes the replica there is no primary: calls are served by the
    # loader (a few errors, then the breaker opens), none fails; then the breaker closes.
    assert cache.stats()["item"].errors > 0, summary
    assert (breaker := cache.breaker_stats()) is not None
    assert breaker.state is BreakerState.CLOSED, summary


# --- the in-process tier across a failover ----------------------------------------------------

LOCAL = Namespace("local", ttl=60, local_ttl=60)


async def _served_locally(cache: Cache, key: str, value: dict[str, str]) -> bool:
    async def load() -> dict[str, str]:
        return value

    before = cache.stats().get(LOCAL.name)
    got = await cache.get_or_load(LOCAL, key, load)
    after = cache.stats()[LOCAL.name]
    return got == value and before is not None and after.local_hits > before.local_hits


@pytest.mark.slow
async def test_the_in_process_tier_follows_the_primary_across_a_failover(
    sentinel_set: SentinelSet,
) -> None:
    """After a failover, an invalidation made on the new primary still reaches another
    process's tier: its feed moved to the new primary (emptying the tier on the way)."""
    prefix = unique_prefix()
    writer = Cache(
        RedisSentinelBackend(sentinel_set.url, BackendOptions(timeout=0.3)), prefix=prefix
    )
    reader = Cache(
        RedisSentinelBackend(sentinel_set.url, BackendOptions(timeout=0.3)), prefix=prefix
    )
    try:
        first = {"v": "1"}
        await writer.set(LOCAL, "k", first)
        await _eventually(lambda: _served_locally(reader, "k", first), "the reader's tier")
        old = sentinel_set.primary.port
        async with sentinel_set.client(sentinel_set.sentinel_port) as sentinel:
            assert await sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE) == b"OK"

        async def moved() -> bool:
            return await sentinel_set.primary_port() != old

        await _eventually(moved, "the sentinel to promote the replica")
        second = {"v": "2"}

        async def written_on_the_new_primary() -> bool:
            await writer.set(LOCAL, "k", second)
            async with sentinel_set.client(sentinel_set.replica.port) as primary:
                return bool(await primary.exists(writer.full_key(LOCAL, "k")))

        await _eventually(written_on_the_new_primary, "a write on the new primary")
        await _eventually(lambda: _served_locally(reader, "k", second), "the tier, again")
        assert await reader.get(LOCAL, "k") == second  # the tier holds the new value
        await writer.delete(LOCAL, "k")  # on the new primary: must reach the reader's tier
        started = time.monotonic()

        async def gone() -> bool:
            return len(reader.l1.tier) == 0

        await _eventually(gone, "the invalidation to reach the reader")
        assert time.monotonic() - started < 1.0
        feed = reader.l1.feed
        assert feed is not None
        assert feed.reconnects >= 1  # type: ignore[attr-defined]
    finally:
        await writer.clear()
        await writer.close()
        await reader.close()
