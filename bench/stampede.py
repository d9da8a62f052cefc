"""Stampede bench: many concurrent cold reads of one key, in one or several OS processes.

Every reader asks for the same missing key at the same instant; the loader sleeps
``loader_delay`` (a slow query). With ogcache (``Cache.get_or_load``) one reader per process
leads a single-flight and one process holds the key's lease, so the key should be loaded
exactly once; the naive pattern (``GET``; on a miss load and ``SET``) loads once per reader
that misses. Each run uses a Redis key prefix of its own (a cold key), cleared at the end.

Latencies are per call, from the call to its return. "Waiters" are the readers that did not
run the loader themselves: they got the value from another reader's load (through the
single-flight, the lease, or a cached value).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import orjson
from redis.asyncio import BlockingConnectionPool, Redis

from bench._support import Gate, Latency, run_processes, unique_name
from bench._support import redis_url as default_redis_url
from ogcache.cache import Cache, Namespace, RedisBackend
from ogcache.cache.backend import BackendOptions

__all__ = ["StampedeResult", "StampedeSeries", "run_stampede", "summarize"]

Mode = Literal["ogcache", "naive"]

ITEMS: Namespace[dict[str, int]] = Namespace("item", ttl=300)
KEY = "hot"
VALUE = {"id": 1, "version": 1}
_POOL_SIZE = 64  # as RedisBackend's default, for both modes


@dataclass(frozen=True, slots=True)
class StampedeResult:
    mode: str
    processes: int
    readers: int
    loader_delay_ms: float
    loads: int
    loads_per_process: list[int]
    wrong_values: int
    latency_all: Latency
    latency_waiters: Latency
    makespan_ms: float
    start_spread_ms: float
    cold: bool
    coalesced: int | None
    lease_waits: int | None
    lease_timeouts: int | None
    backend_errors: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Config:
    mode: Mode
    index: int
    redis_url: str
    prefix: str
    readers: int
    loader_delay: float


def _naive_key(prefix: str) -> str:
    return f"{prefix}:item:{KEY}"


def _worker(config: _Config, gate: Gate) -> None:
    try:
        gate.send(asyncio.run(_work(config, gate)))
    except BaseException:
        gate.fail()


async def _work(config: _Config, gate: Gate) -> dict[str, Any]:
    loads = 0
    loaders: set[asyncio.Task[Any] | None] = set()

    async def load() -> dict[str, int]:
        nonlocal loads
        loads += 1
        loaders.add(asyncio.current_task())
        await asyncio.sleep(config.loader_delay)
        return dict(VALUE)

    backend: RedisBackend | None = None
    cache: Cache | None = None
    naive: Redis | None = None
    full_key = _naive_key(config.prefix)
    if config.mode == "ogcache":
        backend = RedisBackend(config.redis_url, BackendOptions(max_connections=_POOL_SIZE))
        cache = Cache(backend, prefix=config.prefix)
    else:
        pool = BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=_POOL_SIZE,
            timeout=5,
            socket_timeout=5,
            socket_connect_timeout=5,
        )
        naive = Redis(connection_pool=pool)

    async def read() -> Any:
        if cache is not None:
            return await cache.get_or_load(ITEMS, KEY, load)
        assert naive is not None
        raw = await naive.get(full_key)
        if raw is not None:
            return orjson.loads(raw)
        value = await load()
        await naive.set(full_key, orjson.dumps(value), ex=300)
        return value

    async def reader() -> tuple[float, bool, bool]:
        started = time.perf_counter()
        value = await read()
        elapsed = time.perf_counter() - started
        return elapsed, asyncio.current_task() in loaders, value == VALUE

    try:
        # Open the pool's connections now, so the stampede measures the cache, not connects.
        if backend is not None:
            await asyncio.gather(*(backend.ping() for _ in range(_POOL_SIZE)))
        else:
            assert naive is not None
            await asyncio.gather(*(naive.ping() for _ in range(_POOL_SIZE)))
        gate.ready()
        start_at = await asyncio.to_thread(gate.wait_start, 120.0)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        began = time.time()
        outcomes = await asyncio.gather(*(reader() for _ in range(config.readers)))
        finished = time.time()
    finally:
        if cache is not None:
            counters = cache.stats().get(ITEMS.name)
            await cache.close()
        else:
            counters = None
            assert naive is not None
            await naive.aclose()
            await naive.connection_pool.disconnect()
    return {
        "index": config.index,
        "loads": loads,
        "latencies": [elapsed for elapsed, _, _ in outcomes],
        "waiter_latencies": [elapsed for elapsed, loaded, _ in outcomes if not loaded],
        "wrong_values": sum(1 for _, _, right in outcomes if not right),
        "began": began,
        "finished": finished,
        "counters": None
        if counters is None
        else {
            "coalesced": counters.coalesced,
            "lease_waits": counters.lease_waits,
            "lease_timeouts": counters.lease_timeouts,
            "backend_errors": counters.errors,
        },
    }


async def _fill(mode: Mode, redis_url: str, prefix: str) -> None:
    if mode == "ogcache":
        cache = Cache(RedisBackend(redis_url), prefix=prefix)
        try:
            await cache.set(ITEMS, KEY, dict(VALUE))
        finally:
            await cache.close()
    else:
        client = Redis.from_url(redis_url)
        try:
            await client.set(_naive_key(prefix), orjson.dumps(VALUE), ex=300)
        finally:
            await client.aclose()


async def _clean_up(redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url)
    try:
        await backend.delete_prefix(f"{prefix}:")
    finally:
        await backend.close()


def run_stampede(
    mode: Mode,
    *,
    redis_url: str | None = None,
    processes: int = 1,
    readers: int = 1000,
    loader_delay: float = 0.05,
    cold: bool = True,
    timeout: float = 120.0,
) -> StampedeResult:
    """``readers`` concurrent cold reads of one key, split evenly over ``processes``.

    ``cold=False`` stores the value first: every read is then a hit, which gives the latency
    floor of that many concurrent reads (the baseline for the cold runs' figures).
    """
    if mode not in ("ogcache", "naive"):
        raise ValueError(f"mode must be 'ogcache' or 'naive', not {mode!r}")
    redis = redis_url or default_redis_url()
    prefix = unique_name("stampede")
    share, extra = divmod(readers, processes)
    configs = [
        _Config(
            mode=mode,
            index=index,
            redis_url=redis,
            prefix=prefix,
            readers=share + (1 if index < extra else 0),
            loader_delay=loader_delay,
        )
        for index in range(processes)
    ]
    try:
        if not cold:
            asyncio.run(_fill(mode, redis, prefix))
        outcomes = run_processes(
            _worker, lambda index, gate: (configs[index], gate), processes, timeout=timeout
        )
    finally:
        asyncio.run(_clean_up(redis, prefix))
    outcomes.sort(key=lambda outcome: outcome["index"])

    def total(counter: str) -> int | None:
        if mode != "ogcache":
            return None
        return int(sum(outcome["counters"][counter] for outcome in outcomes))

    return StampedeResult(
        mode=mode,
        processes=processes,
        readers=readers,
        loader_delay_ms=loader_delay * 1000,
        loads=sum(outcome["loads"] for outcome in outcomes),
        loads_per_process=[outcome["loads"] for outcome in outcomes],
        wrong_values=sum(outcome["wrong_values"] for outcome in outcomes),
        latency_all=Latency.of([x for outcome in outcomes for x in outcome["latencies"]]),
        latency_waiters=Latency.of(
            [x for outcome in outcomes for x in outcome["waiter_latencies"]]
        ),
        makespan_ms=round(
            (
                max(outcome["finished"] for outcome in outcomes)
                - min(outcome["began"] for outcome in outcomes)
            )
            * 1000,
            2,
        ),
        start_spread_ms=round(
            (
                max(outcome["began"] for outcome in outcomes)
                - min(outcome["began"] for outcome in outcomes)
            )
            * 1000,
            2,
        ),
        cold=cold,
        coalesced=total("coalesced"),
        lease_waits=total("lease_waits"),
        lease_timeouts=total("lease_timeouts"),
        backend_errors=total("backend_errors"),
    )


@dataclass(frozen=True, slots=True)
class StampedeSeries:
    """Several runs of one configuration: every run's loads, and the median and worst of the
    per-run latency quantiles (the machine is shared, so one run's p99 is noisy).
    ``waiters`` is the median count of readers that did not run the loader."""

    mode: str
    processes: int
    readers: int
    cold: bool
    runs: int
    loads: list[int]
    waiters: int
    waiter_p50_ms: float | None
    waiter_p99_ms: float | None
    waiter_p99_worst_ms: float | None
    all_p99_ms: float | None
    makespan_ms: float
    start_spread_max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(results: list[StampedeResult]) -> StampedeSeries:
    first = results[0]

    def median(values: list[float | None]) -> float | None:
        present = sorted(value for value in values if value is not None)
        return round(statistics.median(present), 2) if present else None

    worst = [r.latency_waiters.p99_ms for r in results if r.latency_waiters.p99_ms is not None]
    return StampedeSeries(
        mode=first.mode,
        processes=first.processes,
        readers=first.readers,
        cold=first.cold,
        runs=len(results),
        loads=[r.loads for r in results],
        waiters=round(statistics.median(r.latency_waiters.count for r in results)),
        waiter_p50_ms=median([r.latency_waiters.p50_ms for r in results]),
        waiter_p99_ms=median([r.latency_waiters.p99_ms for r in results]),
        waiter_p99_worst_ms=max(worst) if worst else None,
        all_p99_ms=median([r.latency_all.p99_ms for r in results]),
        makespan_ms=median([r.makespan_ms for r in results]) or 0.0,
        start_spread_max_ms=max(r.start_spread_ms for r in results),
    )
