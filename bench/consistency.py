"""Consistency checker: readers and writers in several OS processes on a few hot keys.

Writers commit ``UPDATE ... SET version = version + 1`` to PostgreSQL, then invalidate the
key; readers read the key through the cache (``mode="ogcache"``: ``Cache.get_or_load``;
``mode="naive"``: plain redis-py ``GET``, on a miss load then ``SET EX``) and record when
they started and which version they got. The loader reads the row, then sleeps a random
0..``loader_delay_max`` in both modes, which widens the window between load and store.

Afterwards it counts

- **stale reads**: reads that started after some write's invalidation had returned yet
  returned a version older than that write's;
- **stale keys**: keys whose cached value, once every process has stopped, is older than the
  database row.

Times are ``time.monotonic_ns()``: on one Linux machine every process reads the same
``CLOCK_MONOTONIC``, so times taken in different processes compare (and a wall-clock step
cannot fake or hide a violation). Both counts must be 0 for ogcache; the naive pattern shows
how often the races happen under the same load. Each run uses a database of its own (created
and dropped on the given server) and a Redis key prefix of its own (cleared at the end).
"""

from __future__ import annotations

import asyncio
import random
import time
from array import array
from bisect import bisect_left
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import asyncpg
from redis.asyncio import BlockingConnectionPool, Redis

from bench._support import (
    Gate,
    create_database,
    drop_database,
    run_processes,
    unique_name,
)
from bench._support import database_url as default_database_url
from bench._support import redis_url as default_redis_url
from ogcache.cache import MISSING, Cache, Namespace, RedisBackend

__all__ = ["CheckerResult", "Mode", "run_checker"]

Mode = Literal["ogcache", "naive"]

TABLE = "consistency_items"
TTL = 300.0  # by default far longer than a run: entries never expire, invalidations remove them
_SELECT = f"SELECT version FROM {TABLE} WHERE id = $1"  # noqa: S608 (constant table name)
_UPDATE = f"UPDATE {TABLE} SET version = version + 1 WHERE id = $1 RETURNING version"  # noqa: S608


@dataclass(frozen=True, slots=True)
class CheckerResult:
    """What one run found. ``sets_rejected`` and the lease counters exist for ogcache only."""

    mode: str
    processes: int
    readers_per_process: int
    writers_per_process: int
    keys: int
    loader_delay_max_ms: float
    write_fraction: float
    ttl_s: float
    reads: int
    writes: int
    stale_reads: int
    stale_keys: int
    cached_keys: int
    loads: int
    sets_rejected: int | None
    coalesced: int | None
    lease_waits: int | None
    lease_timeouts: int | None
    backend_errors: int
    invalidation_retries: int
    reads_after_a_write: int
    duration_s: float
    reads_per_second: float
    max_stale_lag_ms: float | None
    examples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Config:
    mode: Mode
    index: int
    dsn: str
    redis_url: str
    prefix: str
    keys: int
    reads: int
    readers: int
    writers: int
    seed: int
    loader_delay_max: float
    write_fraction: float
    ttl: float


def _namespace(ttl: float) -> Namespace[int]:
    return Namespace("item", ttl=ttl)


# --- the two caches under test ------------------------------------------------------------


class _Ogcache:
    def __init__(self, redis_url: str, prefix: str, ttl: float) -> None:
        self.backend = RedisBackend(redis_url)
        self.cache = Cache(self.backend, prefix=prefix)
        self.items = _namespace(ttl)

    async def warm(self, connections: int) -> None:
        await asyncio.gather(*(self.backend.ping() for _ in range(connections)))

    async def read(self, key: int, loader: Any) -> int:
        value: int = await self.cache.get_or_load(self.items, str(key), loader)
        return value

    async def invalidate(self, key: int) -> bool:
        return await self.cache.delete(self.items, str(key))

    def counters(self) -> dict[str, int]:
        stats = self.cache.stats().get(self.items.name)
        if stats is None:
            return {}
        return {
            "sets_rejected": stats.sets_rejected,
            "coalesced": stats.coalesced,
            "lease_waits": stats.lease_waits,
            "lease_timeouts": stats.lease_timeouts,
            "backend_errors": stats.errors,
        }

    async def close(self) -> None:
        await self.cache.close()


class _Naive:
    """The seed's pattern: ``GET``; on a miss load and ``SET EX``; writes ``DEL``."""

    def __init__(self, redis_url: str, prefix: str, ttl: float) -> None:
        pool = BlockingConnectionPool.from_url(
            redis_url, max_connections=64, timeout=5, socket_timeout=5, socket_connect_timeout=5
        )
        self.redis = Redis(connection_pool=pool)
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl * 1000))

    def full_key(self, key: int) -> str:
        return naive_key(self.prefix, key)

    async def warm(self, connections: int) -> None:
        await asyncio.gather(*(self.redis.ping() for _ in range(connections)))

    async def read(self, key: int, loader: Any) -> int:
        full = self.full_key(key)
        raw = await self.redis.get(full)
        if raw is not None:
            return int(raw)
        value: int = await loader()
        await self.redis.set(full, str(value), px=self.ttl_ms)
        return value

    async def invalidate(self, key: int) -> bool:
        await self.redis.delete(self.full_key(key))
        return True

    def counters(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()


def naive_key(prefix: str, key: int) -> str:
    return f"{prefix}:item:{key}"


# --- one worker process ---------------------------------------------------------------------


def _worker(config: _Config, gate: Gate) -> None:
    try:
        gate.send(asyncio.run(_work(config, gate)))
    except BaseException:
        gate.fail()


async def _work(config: _Config, gate: Gate) -> dict[str, Any]:
    rng = random.Random(config.seed * 1000 + config.index)
    pool_size = min(config.readers + config.writers, 20)
    pool = await asyncpg.create_pool(config.dsn, min_size=pool_size, max_size=pool_size)
    client: _Ogcache | _Naive = (
        _Ogcache(config.redis_url, config.prefix, config.ttl)
        if config.mode == "ogcache"
        else _Naive(config.redis_url, config.prefix, config.ttl)
    )
    try:
        await client.warm(config.readers + config.writers)
        gate.ready()
        start_at = await asyncio.to_thread(gate.wait_start, 120.0)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        return await _exercise(config, rng, pool, client)
    finally:
        await client.close()
        await pool.close()


async def _exercise(
    config: _Config, rng: random.Random, pool: asyncpg.Pool, client: _Ogcache | _Naive
) -> dict[str, Any]:
    read_keys, read_starts, read_ends, read_versions = (array("q") for _ in range(4))
    write_keys, write_versions, write_commits, write_dones = (array("q") for _ in range(4))
    issued = 0
    writes_started = 0
    loads = 0
    retries = 0
    readers_done = False
    ratio = config.write_fraction / (1.0 - config.write_fraction)

    def loader(key: int) -> Any:
        async def load() -> int:
            nonlocal loads
            loads += 1
            version: int = await pool.fetchval(_SELECT, key)
            if config.loader_delay_max > 0:
                await asyncio.sleep(rng.uniform(0.0, config.loader_delay_max))
            return version

        return load

    async def reader() -> None:
        nonlocal issued
        while issued < config.reads:
            issued += 1
            key = rng.randrange(config.keys)
            started = time.monotonic_ns()
            version = await client.read(key, loader(key))
            ended = time.monotonic_ns()
            read_keys.append(key)
            read_starts.append(started)
            read_ends.append(ended)
            read_versions.append(version)

    async def writer() -> None:
        nonlocal writes_started, retries
        while not readers_done:
            if writes_started >= issued * ratio:
                await asyncio.sleep(rng.uniform(0.0002, 0.001))
                continue
            writes_started += 1
            key = rng.randrange(config.keys)
            async with pool.acquire() as connection, connection.transaction():
                version = await connection.fetchval(_UPDATE, key)
            committed = time.monotonic_ns()  # the transaction block has committed
            while not await client.invalidate(key):
                retries += 1  # the cache could not be reached: this write is not done yet
                await asyncio.sleep(0.001)
            done = time.monotonic_ns()
            write_keys.append(key)
            write_versions.append(version)
            write_commits.append(committed)
            write_dones.append(done)

    writers = [asyncio.create_task(writer()) for _ in range(config.writers)]
    began = time.monotonic_ns()
    try:
        await asyncio.gather(*(reader() for _ in range(config.readers)))
    finally:
        readers_done = True
        await asyncio.gather(*writers)
    ended = time.monotonic_ns()
    return {
        "index": config.index,
        "reads": (read_keys, read_starts, read_ends, read_versions),
        "writes": (write_keys, write_versions, write_commits, write_dones),
        "loads": loads,
        "invalidation_retries": retries,
        "duration_ns": ended - began,
        "counters": client.counters(),
    }


# --- the parent: set up, run, check, clean up ------------------------------------------------


async def _set_up(server_url: str, name: str, keys: int) -> str:
    dsn = await create_database(server_url, name)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, version bigint NOT NULL)"
        )
        await connection.executemany(
            f"INSERT INTO {TABLE} (id, version) VALUES ($1, 1)",  # noqa: S608
            [(key,) for key in range(keys)],
        )
    finally:
        await connection.close()
    return dsn


async def _final_state(
    mode: Mode, dsn: str, redis_url: str, prefix: str, keys: int, ttl: float
) -> tuple[dict[int, int], dict[int, int]]:
    """The database's versions and the cached versions (keys that hold a value)."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(f"SELECT id, version FROM {TABLE}")  # noqa: S608
    finally:
        await connection.close()
    database = {int(row["id"]): int(row["version"]) for row in rows}
    cached: dict[int, int] = {}
    if mode == "ogcache":
        cache = Cache(RedisBackend(redis_url), prefix=prefix)
        try:
            for key in range(keys):
                value = await cache.get(_namespace(ttl), str(key))
                if value is not MISSING and value is not None:
                    cached[key] = int(value)
        finally:
            await cache.close()
    else:
        redis = Redis.from_url(redis_url)
        try:
            raws = await redis.mget([naive_key(prefix, key) for key in range(keys)])
        finally:
            await redis.aclose()
        cached = {key: int(raw) for key, raw in enumerate(raws) if raw is not None}
    return database, cached


async def _clean_up(server_url: str, name: str, redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url)
    try:
        await backend.delete_prefix(f"{prefix}:")
    finally:
        await backend.close()
        await drop_database(server_url, name)


def _analyse(
    logs: list[dict[str, Any]], keys: int
) -> tuple[int, int, float | None, list[dict[str, Any]]]:
    """Stale reads, reads that began after at least one write of their key had completed,
    the largest lag (ms between the write's invalidation and the stale read), and examples."""
    # Per key, the writes in order of their invalidation's return, with the running maximum
    # of the versions: "the newest version any completed write had made" at each moment.
    per_key: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
    for log in logs:
        for key, version, committed, done in zip(*log["writes"], strict=True):
            per_key[key].append((done, version, committed, log["index"]))
    done_times: dict[int, list[int]] = {}
    newest: dict[int, list[tuple[int, int]]] = {}  # (version, position of that write)
    for key in range(keys):
        writes = sorted(per_key.get(key, []))
        per_key[key] = writes
        done_times[key] = [write[0] for write in writes]
        running: list[tuple[int, int]] = []
        best = (0, -1)
        for position, write in enumerate(writes):
            if write[1] > best[0]:
                best = (write[1], position)
            running.append(best)
        newest[key] = running
    stale = 0
    after_write = 0
    max_lag: float | None = None
    examples: list[dict[str, Any]] = []
    for log in logs:
        read_keys, starts, ends, versions = log["reads"]
        for key, start, end, version in zip(read_keys, starts, ends, versions, strict=True):
            completed = bisect_left(done_times[key], start)  # writes done strictly before
            if completed == 0:
                continue
            after_write += 1
            required, position = newest[key][completed - 1]
            if version >= required:
                continue
            stale += 1
            done, _, committed, writer = per_key[key][position]
            lag = (start - done) / 1e6
            max_lag = lag if max_lag is None else max(max_lag, lag)
            if len(examples) < 10:
                examples.append(
                    {
                        "key": key,
                        "reader_process": log["index"],
                        "read_started_ns": start,
                        "read_ended_ns": end,
                        "read_version": version,
                        "write_process": writer,
                        "write_version": required,
                        "write_committed_ns": committed,
                        "write_invalidated_ns": done,
                        "read_started_after_invalidation_ms": round(lag, 3),
                    }
                )
    return stale, after_write, max_lag, examples


def run_checker(
    mode: Mode,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    processes: int = 2,
    readers_per_process: int = 16,
    writers_per_process: int = 2,
    keys: int = 20,
    reads_target: int = 100_000,
    seed: int = 1,
    loader_delay_max: float = 0.002,
    write_fraction: float = 0.03,
    ttl: float = TTL,
    timeout: float = 900.0,
) -> CheckerResult:
    """Run readers and writers in ``processes`` spawned processes; count what went stale.

    ``database_url`` is any database on the PostgreSQL server to use (a database of the run's
    own is created there and dropped at the end); ``write_fraction`` is the share of writes
    among all operations (each process keeps its writes at that share of its reads); ``ttl``
    is the entries' TTL (the default outlives the run; a short one adds expiry and early
    refresh to the paths exercised).
    """
    if mode not in ("ogcache", "naive"):
        raise ValueError(f"mode must be 'ogcache' or 'naive', not {mode!r}")
    if not 0 < write_fraction < 1:
        raise ValueError("write_fraction must be between 0 and 1")
    server_url = database_url or default_database_url()
    redis = redis_url or default_redis_url()
    name = unique_name("consistency")
    prefix = name.replace("_", "-")
    dsn = asyncio.run(_set_up(server_url, name, keys))
    try:
        share, extra = divmod(reads_target, processes)
        configs = [
            _Config(
                mode=mode,
                index=index,
                dsn=dsn,
                redis_url=redis,
                prefix=prefix,
                keys=keys,
                reads=share + (1 if index < extra else 0),
                readers=readers_per_process,
                writers=writers_per_process,
                seed=seed,
                loader_delay_max=loader_delay_max,
                write_fraction=write_fraction,
                ttl=ttl,
            )
            for index in range(processes)
        ]
        logs = run_processes(
            _worker, lambda index, gate: (configs[index], gate), processes, timeout=timeout
        )
        database, cached = asyncio.run(_final_state(mode, dsn, redis, prefix, keys, ttl))
    finally:
        asyncio.run(_clean_up(server_url, name, redis, prefix))

    stale_reads, after_write, max_lag, examples = _analyse(logs, keys)
    stale_keys = 0
    for key, version in cached.items():
        if version < database[key]:
            stale_keys += 1
            if len(examples) < 20:
                examples.append({"stale_key": key, "cached": version, "database": database[key]})
    reads = sum(len(log["reads"][0]) for log in logs)
    duration = max(log["duration_ns"] for log in logs) / 1e9

    def total(counter: str) -> int | None:
        if mode != "ogcache":
            return None
        return int(sum(log["counters"].get(counter, 0) for log in logs))

    return CheckerResult(
        mode=mode,
        processes=processes,
        readers_per_process=readers_per_process,
        writers_per_process=writers_per_process,
        keys=keys,
        loader_delay_max_ms=loader_delay_max * 1000,
        write_fraction=write_fraction,
        ttl_s=ttl,
        reads=reads,
        writes=sum(len(log["writes"][0]) for log in logs),
        stale_reads=stale_reads,
        stale_keys=stale_keys,
        cached_keys=len(cached),
        loads=sum(log["loads"] for log in logs),
        sets_rejected=total("sets_rejected"),
        coalesced=total("coalesced"),
        lease_waits=total("lease_waits"),
        lease_timeouts=total("lease_timeouts"),
        backend_errors=total("backend_errors") or 0,
        invalidation_retries=sum(log["invalidation_retries"] for log in logs),
        reads_after_a_write=after_write,
        duration_s=round(duration, 3),
        reads_per_second=round(reads / duration, 1) if duration else 0.0,
        max_stale_lag_ms=None if max_lag is None else round(max_lag, 3),
        examples=examples,
    )
