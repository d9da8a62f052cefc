"""Peer comparison: ogcache against raw redis-py, a hand-written cache-aside, cashews, aiocache.

``python -m bench peers`` (:func:`run_peers`) measures, in one process, against one Redis and
with one value (a 1 KB profile-like JSON document, :func:`profile`), every contender below.
Each encodes the value its own way: raw and hand-written with orjson, cashews with its default
for Redis (pickle), aiocache with its ``JsonSerializer`` (stdlib json), ogcache with its
``JsonCodec`` (orjson) inside its envelope.

- ``raw GET``: redis-py (asyncio, hiredis) ``GET`` + ``orjson.loads``: the floor of a Redis hit;
- ``hand-written``: ``GET``; on a miss load, ``SET EX``; orjson;
- ``cashews``: its Redis backend and its ``@cache(ttl, key)`` decorator (in-process
  de-duplication of concurrent calls is on by default); the cold key with ``lock=True``, the
  stampede protection its documentation recommends;
- ``cashews L1``: the same over its two-tier backend (``client_side=True``: values kept in
  process memory, invalidated through Redis client-side-caching broadcasts);
- ``aiocache``: ``RedisCache`` with ``JsonSerializer`` and its ``@cached`` decorator; the cold
  key with ``@cached_stampede`` (a Redis lock). aiocache has no two-tier mode;
- ``ogcache L2``: ``Cache.get_or_load`` on ``Namespace("bench", ttl=3600)``;
- ``ogcache L1``: the same on ``Namespace("bench", ttl=3600, local_ttl=30)``. Whether the
  in-process tier really served is checked (``local_hits``), never assumed.

Connection pools, all of ``pool`` (64) connections: the peers' hits use redis-py's plain
``ConnectionPool`` (hits never need more connections than that, and it costs less per call
than redis-py's ``BlockingConnectionPool``); the hand-written and aiocache cold key use a
``BlockingConnectionPool`` (a plain pool raises when 1,000 readers ask for a connection;
cashews de-duplicates them in-process and never needs more); ogcache its own bounded pool,
which waits. Every contender has its own keys under the run's unique prefix; all keys are
removed at the end.

Measures (all on hits prepared beforehand, except the cold key); every measure runs in
``rounds`` rounds, and within each round every contender in turn, in an order rotated from
round to round (the machine may be shared: neighbouring moments compare fairly); the
tables give the median over the rounds:

- **hit, concurrency 1**: ``ops`` sequential awaited reads over ``keys`` keys, each call timed;
  p50 and p99, and ops/s (calls over the loop's wall time);
- **ops/s, concurrency 64**: ``concurrency`` tasks reading in a loop for ``duration`` s,
  each in its own random order of the keys;
- **batch**: ``batch_ops`` reads of ``batch_size`` keys at once (raw and hand-written
  ``MGET``, cashews ``get_many``, aiocache ``multi_get``, ogcache ``get_many``); p50 and p99;
- **cold key**: ``stampede_readers`` concurrent cache-aside reads of one missing key whose
  loader sleeps ``loader_delay``; loader calls and the p99 of the calls
  (``stampede_rounds`` rounds, a new key each).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis

from bench._support import machine, quantile
from bench._support import redis_url as default_redis_url
from ogcache.cache import BackendOptions, Cache, Namespace, create_backend

__all__ = [
    "CONTENDERS",
    "PeersConfig",
    "checks",
    "peers_table",
    "profile",
    "run_peers",
    "save_chart",
]

CONTENDERS = (
    "raw GET",
    "hand-written",
    "cashews",
    "cashews L1",
    "aiocache",
    "ogcache L2",
    "ogcache L1",
)
# Longer than a run (3-6 minutes): every prepared hit must stay a hit until the end. The
# TTL does not change what a hit costs.
TTL = 3600
LOCAL_TTL = 30
PAYLOAD_BYTES = 1024

Op = Callable[[str], Awaitable[Any]]
BatchOp = Callable[[list[str]], Awaitable[Any]]


def profile(index: int) -> dict[str, Any]:
    """A user profile as a chat service would cache it: 1,024 bytes of JSON (orjson)."""
    value: dict[str, Any] = {
        "id": 100_000 + index,
        "username": f"user_{index:06d}",
        "display_name": f"User {index}",
        "email": f"user_{index:06d}@example.org",
        "locale": "en-GB",
        "timezone": "Europe/London",
        "created_at": "2025-03-14T09:26:53Z",
        "last_seen_at": "2026-11-24T17:40:00Z",
        "verified": True,
        "premium": index % 3 == 0,
        "roles": ["member", "beta-tester"],
        "avatar_url": f"https://cdn.example.org/avatars/{index:06d}.webp",
        "preferences": {
            "theme": "dark",
            "language": "en",
            "model": "standard",
            "temperature": 0.7,
            "notifications": {"email": True, "push": False, "digest": "weekly"},
            "shortcuts": ["summarize", "translate", "explain"],
        },
        "stats": {"messages": 1234 + index, "conversations": 56, "tokens_used": 789_012},
        "tags": ["python", "asyncio", "redis"],
        "bio": "",
    }
    missing = PAYLOAD_BYTES - len(orjson.dumps(value))
    value["bio"] = ("Writes about caches, queues and the occasional sourdough. " * 20)[:missing]
    return value


@dataclass(frozen=True, slots=True)
class PeersConfig:
    redis_url: str | None = None
    rounds: int = 5
    ops: int = 5000
    keys: int = 1000
    duration: float = 1.0
    concurrency: int = 64
    batch_size: int = 100
    batch_ops: int = 300
    stampede_readers: int = 1000
    stampede_rounds: int = 3
    loader_delay: float = 0.05
    pool: int = 64
    contenders: tuple[str, ...] = CONTENDERS


class Loader:
    """The "database": counts its calls; sleeps ``delay`` (0 while hits are measured)."""

    def __init__(self) -> None:
        self.calls = 0
        self.delay = 0.0

    async def __call__(self, key: str) -> dict[str, Any]:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return profile(_index(key))


def _index(key: str) -> int:
    tail = key.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


@dataclass(slots=True)
class Contender:
    """One library set up for the bench: a cache-aside read, a batch read, a cold read."""

    name: str
    hit: Op
    batch: BatchOp
    cold: Op | None
    protection: str
    close: Callable[[], Awaitable[None]]
    note: str = ""
    get: Op | None = None  # the library's plain read, no loader (None: ``hit`` is one)
    local_hits: Callable[[], int] | None = None
    local_held: Callable[[Sequence[str]], Awaitable[int]] | None = None


def _plain(url: str, pool: int) -> Redis:
    """redis-py's plain pool: it raises beyond ``pool`` connections (hits never need more
    here) and costs less per call than its ``BlockingConnectionPool``."""
    return Redis(connection_pool=ConnectionPool.from_url(url, max_connections=pool))


def _blocking(url: str, pool: int) -> Redis:
    """redis-py's waiting pool: what 1,000 concurrent readers of a cold key need."""
    return Redis(
        connection_pool=BlockingConnectionPool.from_url(url, max_connections=pool, timeout=10)
    )


async def _raw(url: str, run: str, pool: int, loader: Loader) -> Contender:
    client = _plain(url, pool)
    prefix = f"{run}:raw:"

    async def hit(key: str) -> Any:
        data = await client.get(prefix + key)
        if data is None:  # the floor has no loader: fill like the others, but never time it
            value = await loader(key)
            await client.set(prefix + key, orjson.dumps(value), ex=TTL)
            return value
        return orjson.loads(data)

    async def batch(keys: list[str]) -> Any:
        found = await client.mget([prefix + k for k in keys])
        return [None if data is None else orjson.loads(data) for data in found]

    async def close() -> None:
        await client.aclose()
        await client.connection_pool.disconnect()

    return Contender("raw GET", hit, batch, None, "-", close, f"ConnectionPool({pool})")


async def _hand_written(url: str, run: str, pool: int, loader: Loader) -> Contender:
    client = _plain(url, pool)
    cold_client = _blocking(url, pool)
    prefix = f"{run}:hand:"

    async def read_through(client: Redis, key: str) -> Any:
        data = await client.get(prefix + key)
        if data is not None:
            return orjson.loads(data)
        value = await loader(key)
        await client.set(prefix + key, orjson.dumps(value), ex=TTL)
        return value

    async def aside(key: str) -> Any:
        return await read_through(client, key)

    async def cold(key: str) -> Any:
        return await read_through(cold_client, key)

    async def batch(keys: list[str]) -> Any:
        found = await client.mget([prefix + k for k in keys])
        values = [None if data is None else orjson.loads(data) for data in found]
        missing = [i for i, value in enumerate(values) if value is None]
        if missing:
            async with client.pipeline(transaction=False) as pipe:
                for i in missing:
                    values[i] = await loader(keys[i])
                    pipe.set(prefix + keys[i], orjson.dumps(values[i]), ex=TTL)
                await pipe.execute()
        return values

    async def close() -> None:
        for each in (client, cold_client):
            await each.aclose()
            await each.connection_pool.disconnect()

    note = f"ConnectionPool({pool}); cold key: BlockingConnectionPool({pool})"
    return Contender("hand-written", aside, batch, cold, "none", close, note)


async def _cashews(
    url: str, run: str, pool: int, loader: Loader, *, client_side: bool
) -> Contender:
    from cashews import Cache as CashewsCache

    cache = CashewsCache()
    # Its default is a BlockingConnectionPool of 10: too few for 64 tasks, and redis-py's
    # blocking pool costs more per call than the plain one, which suffices here (cashews
    # de-duplicates concurrent calls of one key, so the cold key never needs more).
    options: dict[str, Any] = {"max_connections": pool, "connection_pool_class": ConnectionPool}
    if client_side:
        options.update(client_side=True, client_side_prefix=f"{run}:cashews-l1:")
    backend = cache.setup(url, **options)
    await cache.init()
    template = f"{run}:cashews:{{key}}"

    @cache(ttl=TTL, key=template)
    async def aside(key: str) -> Any:
        return await loader(key)

    @cache(ttl=TTL, key=template, lock=True)
    async def locked(key: str) -> Any:
        return await loader(key)

    async def batch(keys: list[str]) -> Any:
        return await cache.get_many(*[template.format(key=k) for k in keys])

    async def get(key: str) -> Any:
        return await cache.get(template.format(key=key))

    async def local_held(keys: Sequence[str]) -> int:
        """Keys whose value sits in the client-side tier's memory (a private attribute)."""
        memory = getattr(backend, "_local_cache", None)
        if memory is None:
            return 0
        return sum([await memory.exists(template.format(key=key)) for key in keys])

    name = "cashews L1" if client_side else "cashews"
    note = (
        f"{type(backend).__name__}: client_side=True (Redis BCAST tracking), pickle, "
        f"ConnectionPool({pool})"
        if client_side
        else f"{type(backend).__name__}: default pickle serializer, ConnectionPool({pool})"
    )
    return Contender(
        name, aside, batch, locked, "@cache(lock=True)", cache.close, note, get,
        local_held=local_held if client_side else None,
    )  # fmt: skip


async def _aiocache(url: str, run: str, pool: int, loader: Loader) -> Contender:
    from aiocache import RedisCache, cached, cached_stampede
    from aiocache.serializers import JsonSerializer

    where = urlsplit(url)
    options: dict[str, Any] = {
        "cache": RedisCache,
        "serializer": JsonSerializer(),
        "namespace": f"{run}:aiocache",
        "endpoint": where.hostname or "127.0.0.1",
        "port": where.port or 6379,
        "db": int(where.path.strip("/") or 0),
        "password": where.password,
        "pool_max_size": pool,
    }

    def key_of(function: Any, key: str) -> str:
        return f"profile:{key}"

    async def load(key: str) -> Any:
        return await loader(key)

    async def load_locked(key: str) -> Any:
        return await loader(key)

    # aiocache is untyped: its decorators return Any (applied as calls, not as decorators,
    # so that mypy does not call the functions they wrap untyped).
    aside: Any = cached(ttl=TTL, key_builder=key_of, **options)(load)
    # redis-py's plain pool (aiocache's default) raises beyond its bound, which the cold
    # key's concurrent readers reach: that decorator's cache waits for a connection instead.
    stampede: Any = cached_stampede(
        lease=2,
        ttl=TTL,
        key_builder=key_of,
        **{**options, "connection_pool_class": BlockingConnectionPool},
    )(load_locked)
    store = aside.cache

    async def batch(keys: list[str]) -> Any:
        return await store.multi_get([f"profile:{k}" for k in keys])

    async def get(key: str) -> Any:
        return await store.get(f"profile:{key}")

    async def close() -> None:
        # What aiocache's close() does, minus redis-py's deprecated close() it calls.
        for each in (store, stampede.cache):
            await each.client.aclose()
            await each.client.connection_pool.disconnect()

    return Contender(
        "aiocache",
        aside,
        batch,
        stampede,
        "@cached_stampede(lease=2)",
        close,
        f"RedisCache + JsonSerializer, ConnectionPool({pool}); cold key: "
        f"BlockingConnectionPool({pool}); no two-tier mode",
        get,
    )


async def _ogcache(url: str, run: str, pool: int, loader: Loader, *, local: bool) -> Contender:
    backend = create_backend(url, BackendOptions(max_connections=pool))
    cache = Cache(backend, prefix=f"{run}-{'ogl1' if local else 'ogl2'}")
    namespace: Namespace[dict[str, Any]] = Namespace(
        "bench", ttl=TTL, local_ttl=LOCAL_TTL if local else 0.0
    )

    async def aside(key: str) -> Any:
        return await cache.get_or_load(namespace, key, lambda: loader(key))

    async def batch(keys: list[str]) -> Any:
        return await cache.get_many(namespace, keys)

    def local_hits() -> int:
        stats = cache.stats().get(namespace.name)
        return 0 if stats is None else stats.local_hits

    async def get(key: str) -> Any:
        return await cache.get(namespace, key)

    name = "ogcache L1" if local else "ogcache L2"
    note = f"BoundedConnectionPool({pool})" + (f", local_ttl={LOCAL_TTL}" if local else "")
    return Contender(
        name, aside, batch, aside, "built in (single-flight + lease)", cache.close, note, get,
        local_hits=local_hits if local else None,
    )  # fmt: skip


async def _build(name: str, url: str, run: str, pool: int, loader: Loader) -> Contender:
    if name == "raw GET":
        return await _raw(url, run, pool, loader)
    if name == "hand-written":
        return await _hand_written(url, run, pool, loader)
    if name in ("cashews", "cashews L1"):
        return await _cashews(url, run, pool, loader, client_side=name == "cashews L1")
    if name == "aiocache":
        return await _aiocache(url, run, pool, loader)
    if name in ("ogcache L2", "ogcache L1"):
        return await _ogcache(url, run, pool, loader, local=name == "ogcache L1")
    raise ValueError(f"unknown contender {name!r}; known: {', '.join(CONTENDERS)}")


# --- measures ------------------------------------------------------------------------------


async def _timed_loop(op: Op, keys: Sequence[str], count: int) -> tuple[list[float], float]:
    samples = [0.0] * count
    clock = time.perf_counter
    size = len(keys)
    began = clock()
    for i in range(count):
        key = keys[i % size]
        start = clock()
        await op(key)
        samples[i] = clock() - start
    return samples, clock() - began


async def _throughput(op: Op, keys: Sequence[str], tasks: int, duration: float) -> float:
    clock = time.perf_counter
    counts = [0] * tasks
    deadline = clock() + duration

    async def worker(index: int) -> None:
        # Each task its own random order of the keys: tasks seldom read the same key at the
        # same moment (a library that merges concurrent reads of one key gains little).
        order = random.Random(index).sample(list(keys), len(keys))
        size = len(order)
        i = 0
        while clock() < deadline:
            await op(order[i % size])
            i += 1
        counts[index] = i

    began = clock()
    await asyncio.gather(*(worker(index) for index in range(tasks)))
    return sum(counts) / (clock() - began)


async def _batches(
    batch: BatchOp, keys: list[str], size: int, count: int
) -> tuple[list[float], int]:
    """Each batch's latency, and how many prepared keys the batches missed (reported: a
    library that degrades to misses on a timeout, say, must not look fast for it)."""
    groups = [keys[i : i + size] for i in range(0, len(keys), size)] or [keys]
    samples = [0.0] * count
    missed = 0
    clock = time.perf_counter
    for i in range(count):
        group = groups[i % len(groups)]
        start = clock()
        values = await batch(group)
        samples[i] = clock() - start
        missed += _misses(values, group)
    return samples, missed


def _misses(values: Any, keys: list[str]) -> int:
    found = list(values.values()) if isinstance(values, dict) else list(values)
    return len(keys) - len(found) + sum(1 for value in found if value is None)


async def _stampede(op: Op, key: str, readers: int) -> tuple[list[float], list[str]]:
    """Each reader's latency, and the errors the library raised to readers (reported)."""
    clock = time.perf_counter

    async def reader() -> float:
        start = clock()
        value = await op(key)
        if value != profile(_index(key)):
            raise RuntimeError("a cold read returned a wrong value")
        return clock() - start

    outcomes = await asyncio.gather(*(reader() for _ in range(readers)), return_exceptions=True)
    latencies = [x for x in outcomes if isinstance(x, float)]
    errors = [f"{type(x).__name__}: {x}" for x in outcomes if isinstance(x, BaseException)]
    return latencies, errors


def _us(seconds: Sequence[float], q: float) -> float:
    value = quantile(sorted(seconds), q)
    return round((value or 0.0) * 1e6, 2)


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 2)


def _rotated(names: Sequence[str], round_index: int) -> list[str]:
    shift = round_index % len(names) if names else 0
    return [*names[shift:], *names[:shift]]


@dataclass(slots=True)
class _Series:
    """Per-round figures of one contender."""

    hit_p50_us: list[float] = field(default_factory=list)
    hit_p99_us: list[float] = field(default_factory=list)
    get_p50_us: list[float] = field(default_factory=list)
    get_p99_us: list[float] = field(default_factory=list)
    ops_c1: list[float] = field(default_factory=list)
    ops_cn: list[float] = field(default_factory=list)
    batch_p50_ms: list[float] = field(default_factory=list)
    batch_p99_ms: list[float] = field(default_factory=list)
    cold_loads: list[int] = field(default_factory=list)
    cold_p50_ms: list[float] = field(default_factory=list)
    cold_p99_ms: list[float] = field(default_factory=list)
    cold_errors: list[int] = field(default_factory=list)
    batch_misses: list[int] = field(default_factory=list)


async def _prepare(contenders: dict[str, Contender], keys: list[str], loader: Loader) -> int:
    """Fill every contender's keys through its own cache-aside path; the loads it took."""
    loader.delay = 0.0
    before = loader.calls
    for contender in contenders.values():
        for key in keys:
            value = await contender.hit(key)
            if value != profile(_index(key)):
                raise RuntimeError(f"{contender.name} returned a wrong value for {key}")
    return loader.calls - before


async def _wait_for_local(contender: Contender, key: str, patience: float = 5.0) -> bool:
    """Read until the in-process tier serves (its invalidation feed must be live first)."""
    assert contender.local_hits is not None
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        before = contender.local_hits()
        await contender.hit(key)
        if contender.local_hits() > before:
            return True
        await asyncio.sleep(0.01)
    return False


async def run_peers(
    config: PeersConfig, say: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Run every measure; the report (JSON-ready) with medians, ratios and checks."""
    url = config.redis_url or default_redis_url()
    run = f"peers-{uuid.uuid4().hex[:10]}"
    loader = Loader()
    keys = [f"profile-{i}" for i in range(max(config.keys, config.batch_size))]
    names = list(config.contenders)
    contenders: dict[str, Contender] = {}
    series = {name: _Series() for name in names}
    loads_during_hits: dict[str, int] = {}
    local: dict[str, Any] = {}
    cold_errors: dict[str, list[dict[str, Any]]] = {}
    load_before = os.getloadavg()
    began = time.monotonic()
    try:
        for name in names:
            contenders[name] = await _build(name, url, run, config.pool, loader)
        fills = await _prepare(contenders, keys, loader)
        for name, contender in contenders.items():
            if contender.local_hits is not None:
                local[name] = {"ready": await _wait_for_local(contender, keys[0])}
        say(f"prepared {len(keys)} keys x {len(names)} contenders ({fills} loads)")
        # Everything alive now is the bench's own: keep it out of the collections run
        # between measurements, so they are short and the same for every contender.
        gc.collect()
        gc.freeze()
        for contender in contenders.values():  # warm: connections open, code paths hot
            await _timed_loop(contender.hit, keys, min(config.ops, 1000))
            await _throughput(contender.hit, keys, config.concurrency, min(config.duration, 0.2))
        served = dict.fromkeys(local, 0)

        say(f"hits, concurrency 1: {config.rounds} rounds x {config.ops} ops")
        for round_index in range(config.rounds):
            await _prepare(contenders, keys, loader)
            for name in _rotated(names, round_index):
                calls = loader.calls
                gc.collect()
                contender = contenders[name]
                before = contender.local_hits() if contender.local_hits else 0
                samples, wall = await _timed_loop(contender.hit, keys, config.ops)
                if contender.local_hits:
                    served[name] += contender.local_hits() - before
                loads_during_hits[name] = loads_during_hits.get(name, 0) + loader.calls - calls
                s = series[name]
                s.hit_p50_us.append(_us(samples, 0.50))
                s.hit_p99_us.append(_us(samples, 0.99))
                s.ops_c1.append(config.ops / wall)
                if contender.get is not None:
                    gc.collect()
                    samples, _ = await _timed_loop(contender.get, keys, config.ops)
                    s.get_p50_us.append(_us(samples, 0.50))
                    s.get_p99_us.append(_us(samples, 0.99))
        total = config.rounds * config.ops
        for name in served:
            local[name].update(local_hits=served[name], hit_phase_reads=total)
            local[name]["active"] = served[name] > 0
            local[name]["share"] = round(served[name] / total, 4)
        for name, contender in contenders.items():
            if contender.local_held is not None:
                held = await contender.local_held(keys)
                local[name] = {"active": held > 0, "keys_held": held, "keys": len(keys)}

        say(f"ops/s, concurrency {config.concurrency}: {config.rounds} x {config.duration:g} s")
        for round_index in range(config.rounds):
            await _prepare(contenders, keys, loader)
            for name in _rotated(names, round_index):
                calls = loader.calls
                gc.collect()
                rate = await _throughput(
                    contenders[name].hit, keys, config.concurrency, config.duration
                )
                loads_during_hits[name] += loader.calls - calls
                series[name].ops_cn.append(rate)

        say(f"batches of {config.batch_size}: {config.rounds} rounds x {config.batch_ops}")
        for round_index in range(config.rounds):
            await _prepare(contenders, keys, loader)
            for name in _rotated(names, round_index):
                gc.collect()
                samples, missed = await _batches(
                    contenders[name].batch, keys, config.batch_size, config.batch_ops
                )
                series[name].batch_misses.append(missed)
                series[name].batch_p50_ms.append(_us(samples, 0.50) / 1000)
                series[name].batch_p99_ms.append(_us(samples, 0.99) / 1000)

        cold_names = [name for name in names if contenders[name].cold is not None]
        say(
            f"cold key: {config.stampede_rounds} rounds x {config.stampede_readers} readers, "
            f"loader {config.loader_delay * 1000:g} ms"
        )
        loader.delay = config.loader_delay
        for round_index in range(config.stampede_rounds):
            for name in _rotated(cold_names, round_index):
                cold = contenders[name].cold
                assert cold is not None
                key = f"cold-{round_index}-{name.replace(' ', '_')}-{round_index + 7}"
                calls = loader.calls
                gc.collect()
                samples, errors = await _stampede(cold, key, config.stampede_readers)
                s = series[name]
                s.cold_errors.append(len(errors))
                if errors:
                    cold_errors.setdefault(name, []).append(
                        {"round": round_index, "errors": len(errors), "first": errors[0]}
                    )
                s.cold_loads.append(loader.calls - calls)
                s.cold_p50_ms.append(_us(samples, 0.50) / 1000)
                s.cold_p99_ms.append(_us(samples, 0.99) / 1000)
        loader.delay = 0.0
    finally:
        gc.unfreeze()
        for contender in contenders.values():
            try:
                await contender.close()
            except Exception as exc:  # report, but still remove the keys
                say(f"closing {contender.name} failed: {exc!r}")
        removed = await _clean_up(url, run)

    rows = {name: _row(contenders[name], series[name]) for name in names}
    for name, state in local.items():
        rows[name]["l1_active"] = state.get("active", False)
    raw_p50 = rows.get("raw GET", {}).get("hit_p50_us")
    for row in rows.values():
        row["x_raw_p50"] = round(row["hit_p50_us"] / raw_p50, 3) if raw_p50 else None
    report: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(load_before),
        "versions": _versions(),
        "config": {k: v for k, v in asdict(config).items() if k != "redis_url"},
        "payload_bytes": len(orjson.dumps(profile(0))),
        "keys_removed": removed,
        "loads_during_hit_phases": loads_during_hits,
        "local_tier": local,
        "cold_errors": cold_errors,
        "duration_s": round(time.monotonic() - began, 1),
        "rows": rows,
        "rounds": {name: asdict(series[name]) for name in names},
    }
    report["checks"] = checks(rows)
    return report


def _row(contender: Contender, s: _Series) -> dict[str, Any]:
    def med(values: Sequence[float]) -> float | None:
        return _median(values) if values else None

    return {
        "contender": contender.name,
        "hit_p50_us": med(s.hit_p50_us),
        "hit_p99_us": med(s.hit_p99_us),
        "get_p50_us": med(s.get_p50_us),
        "get_p99_us": med(s.get_p99_us),
        "ops_c1": round(statistics.median(s.ops_c1)) if s.ops_c1 else None,
        "ops_cn": round(statistics.median(s.ops_cn)) if s.ops_cn else None,
        "batch_p50_ms": med(s.batch_p50_ms),
        "batch_p99_ms": med(s.batch_p99_ms),
        "batch_misses": sum(s.batch_misses),
        "cold_loads": s.cold_loads or None,
        "cold_p50_ms": med(s.cold_p50_ms),
        "cold_p99_ms": med(s.cold_p99_ms),
        "cold_p99_worst_ms": max(s.cold_p99_ms) if s.cold_p99_ms else None,
        "cold_errors": s.cold_errors or None,
        "protection": contender.protection,
        "note": contender.note,
    }


async def _clean_up(url: str, run: str) -> int:
    client = Redis.from_url(url)
    removed = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"*{run}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += await client.unlink(*batch)
                batch.clear()
        if batch:
            removed += await client.unlink(*batch)
    finally:
        await client.aclose()
    return removed


def _versions() -> dict[str, str]:
    found = {}
    for package in ("ogcache", "redis", "hiredis", "orjson", "cashews", "aiocache"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "-"
    return found


# --- verdicts ------------------------------------------------------------------------------

# (row key, label, True if higher is better)
_COMPARED = (
    ("hit_p50_us", "hit p50", False),
    ("hit_p99_us", "hit p99", False),
    ("ops_c1", "ops/s c=1", True),
    ("ops_cn", "ops/s c=64", True),
    ("batch_p50_ms", "batch p50", False),
    ("batch_p99_ms", "batch p99", False),
    ("cold_loads", "cold loads", False),
    ("cold_p99_ms", "cold p99", False),
)
# ogcache's tier against the peers' same tier
_PAIRS = (("ogcache L2", ("cashews", "aiocache")), ("ogcache L1", ("cashews L1",)))


def checks(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, computed from the rows: each ``passed`` True, False or None
    (not measured)."""
    found: list[dict[str, Any]] = []
    raw = rows.get("raw GET", {}).get("hit_p50_us")
    l2 = rows.get("ogcache L2", {}).get("hit_p50_us")
    l1_row = rows.get("ogcache L1", {})
    l1 = l1_row.get("hit_p50_us")
    ratio = round(l2 / raw, 3) if raw and l2 else None
    found.append(
        {
            "check": "ogcache L2 hit p50 <= 1.10 x raw GET p50",
            "ratio": ratio,
            "passed": None if ratio is None else ratio <= 1.10,
            "detail": f"{l2} vs {raw} us",
        }
    )
    speedup = round(raw / l1, 1) if raw and l1 else None
    active = l1_row.get("l1_active")
    found.append(
        {
            "check": "ogcache L1 hit p50 >= 50x faster than raw GET p50",
            "ratio": speedup,
            "passed": None if speedup is None else (speedup >= 50 and bool(active)),
            "detail": f"{raw} vs {l1} us" + ("" if active else "; L1 NOT ACTIVE"),
        }
    )
    for key, label, higher in _COMPARED:
        parts = []
        verdicts = []
        for ours, peers in _PAIRS:
            mine = _figure(rows.get(ours, {}).get(key))
            for peer in peers:
                theirs = _figure(rows.get(peer, {}).get(key))
                if mine is None or theirs is None:
                    continue
                if key == "cold_loads":
                    ahead = mine <= theirs  # one load is the best there is: a tie is no loss
                else:
                    ahead = mine > theirs if higher else mine < theirs
                verdicts.append(ahead)
                shown = f"{mine / theirs:.2f}x" if theirs else "-"
                parts.append(f"{ours} vs {peer} {shown}{'' if ahead else ' (behind)'}")
        found.append(
            {
                "check": f"ogcache ahead of cashews and aiocache: {label}",
                "ratio": None,
                "passed": all(verdicts) if verdicts else None,
                "detail": "; ".join(parts),
            }
        )
    return found


def _figure(value: Any) -> float | None:
    if isinstance(value, list):  # cold loads per round: the median
        return float(statistics.median(value)) if value else None
    return None if value is None else float(value)


# --- output --------------------------------------------------------------------------------


def peers_table(report: dict[str, Any]) -> str:
    rows = report["rows"]

    def f(value: Any, digits: int = 1) -> str:
        if value is None:
            return "-"
        if isinstance(value, list):
            low, high = min(value), max(value)
            return f"{low}" if low == high else f"{low}-{high}"
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:,.{digits}f}"

    header = (
        f"{'contender':<13} {'hit p50 us':>10} {'hit p99 us':>10} {'x raw':>6} "
        f"{'ops/s c=1':>9} {'ops/s c=' + str(report['config']['concurrency']):>10} "
        f"{'batch p50 ms':>12} {'batch p99 ms':>12} {'cold loads':>10} {'cold p99 ms':>11} "
        f"{'cold errors':>11}"
    )
    lines = [header, "-" * len(header)]
    for name, row in rows.items():
        lines.append(
            f"{name:<13} {f(row['hit_p50_us']):>10} {f(row['hit_p99_us']):>10} "
            f"{f(row['x_raw_p50'], 2):>6} {f(row['ops_c1']):>9} {f(row['ops_cn']):>10} "
            f"{f(row['batch_p50_ms'], 2):>12} {f(row['batch_p99_ms'], 2):>12} "
            f"{f(row['cold_loads']):>10} {f(row['cold_p99_ms']):>11} "
            f"{f(sum(row['cold_errors']) if row['cold_errors'] else None):>11}"
        )
    return "\n".join(lines)


def reads_table(report: dict[str, Any]) -> str:
    """The libraries' plain read (no loader) beside their cache-aside read, concurrency 1."""
    raw = report["rows"].get("raw GET", {}).get("hit_p50_us")
    header = (
        f"{'contender':<13} {'get p50 us':>10} {'get p99 us':>10} {'x raw':>6} "
        f"{'cache-aside p50 us':>18} {'aside - get us':>14}"
    )
    lines = [header, "-" * len(header)]
    for name, row in report["rows"].items():
        get = row.get("get_p50_us")
        if get is None:
            continue
        lines.append(
            f"{name:<13} {get:>10,.1f} {row['get_p99_us']:>10,.1f} "
            f"{(get / raw if raw else 0):>6.2f} {row['hit_p50_us']:>18,.1f} "
            f"{row['hit_p50_us'] - get:>14,.1f}"
        )
    return "\n".join(lines)


def notes(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, row in report["rows"].items():
        extra = f"; {row['note']}" if row["note"] else ""
        lines.append(f"{name}: stampede protection {row['protection']}{extra}")
    for name, state in report["local_tier"].items():
        if "keys_held" in state:
            lines.append(
                f"{name}: {state['keys_held']} of {state['keys']} keys held in process memory "
                "after the hit phase (its client-side tier)"
            )
        elif state.get("active"):
            lines.append(
                f"{name}: L1 active, {state['local_hits']:,} of {state['hit_phase_reads']:,} "
                f"timed hits ({state['share']:.1%}) served from process memory"
            )
        else:
            lines.append(
                f"!!! {name}: L1 NOT ACTIVE (local_hits = {state.get('local_hits', 0)}): "
                "its row shows L2 figures"
            )
    for name, row in report["rows"].items():
        if row["batch_misses"]:
            config = report["config"]
            asked = config["rounds"] * config["batch_ops"] * config["batch_size"]
            lines.append(
                f"!!! {name}: its batches missed {row['batch_misses']:,} of {asked:,} prepared keys"
            )
    for name, failures in report["cold_errors"].items():
        for failure in failures:
            lines.append(
                f"!!! {name}: cold key round {failure['round']}: {failure['errors']} of "
                f"{report['config']['stampede_readers']} readers got an error from the "
                f"library ({failure['first']}); the row's p99 is over the others"
            )
    loads = {k: v for k, v in report["loads_during_hit_phases"].items() if v}
    if loads:
        lines.append(f"loads during hit phases (expired entries refilled): {loads}")
    return lines


def save_chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    rows = report["rows"]
    names = list(rows)
    colours = ["#ff7f0e" if name.startswith("ogcache") else "#7f7f7f" for name in names]
    panels = [
        ("hit_p50_us", "hit p50, µs (log)", True),
        ("hit_p99_us", "hit p99, µs (log)", True),
        ("ops_c1", "ops/s, concurrency 1 (log)", True),
        ("ops_cn", f"ops/s, concurrency {report['config']['concurrency']} (log)", True),
        ("batch_p50_ms", f"batch of {report['config']['batch_size']} p50, ms", False),
        ("cold_p99_ms", "cold key p99, ms (loads in label)", False),
    ]
    figure, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for axis, (key, title, log) in zip(axes.flat, panels, strict=True):
        values = [_figure(rows[name][key]) or 0.0 for name in names]
        labels = names
        if key == "cold_p99_ms":
            labels = [f"{name} ({_loads_label(rows[name]['cold_loads'])})" for name in names]
        axis.barh(labels, values, color=colours)
        axis.invert_yaxis()
        axis.set_title(title, fontsize=10)
        if log and any(values):
            axis.set_xscale("log")
        for y, value in enumerate(values):
            if value:
                shown = f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
                axis.text(value, y, f" {shown}", va="center", fontsize=7)
        axis.tick_params(labelsize=8)
        axis.xaxis.set_minor_formatter(NullFormatter())
    figure.suptitle(
        f"Peers on one Redis, 1 KB JSON value, medians of {report['config']['rounds']} "
        f"interleaved rounds ({report['generated_at']}, {report['machine']['cpus']} CPUs)",
        fontsize=11,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _loads_label(loads: list[int] | None) -> str:
    if not loads:
        return "n/a"
    low, high = min(loads), max(loads)
    return f"{low} load{'s' if high > 1 else ''}" if low == high else f"{low}-{high} loads"


# --- command line --------------------------------------------------------------------------

RESULTS = Path(__file__).resolve().parent / "results"


def add_parser(commands: Any) -> None:
    """The ``peers`` subcommand and its options."""
    parser = commands.add_parser(
        "peers", help="ogcache against raw redis-py, hand-written, cashews and aiocache"
    )
    defaults = PeersConfig()
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="interleaved rounds")
    parser.add_argument("--ops", type=int, default=defaults.ops, help="timed hits per round")
    parser.add_argument("--keys", type=int, default=defaults.keys)
    parser.add_argument(
        "--duration", type=float, default=defaults.duration, help="seconds per throughput round"
    )
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--batch-ops", type=int, default=defaults.batch_ops)
    parser.add_argument("--stampede-readers", type=int, default=defaults.stampede_readers)
    parser.add_argument("--stampede-rounds", type=int, default=defaults.stampede_rounds)
    parser.add_argument(
        "--loader-delay-ms", type=float, default=defaults.loader_delay * 1000, help="cold key"
    )
    parser.add_argument("--pool", type=int, default=defaults.pool, help="connections each")
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated subset of: " + ", ".join(CONTENDERS),
    )
    parser.add_argument("--output", default=str(RESULTS / "peers.json"), help="PNG: same stem")


def command(args: Any, argv: Sequence[str] = ()) -> int:
    """``python -m bench peers``: run, print the table and the checks, save JSON and PNG."""
    import json

    config = PeersConfig(
        rounds=args.rounds,
        ops=args.ops,
        keys=args.keys,
        duration=args.duration,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        batch_ops=args.batch_ops,
        stampede_readers=args.stampede_readers,
        stampede_rounds=args.stampede_rounds,
        loader_delay=args.loader_delay_ms / 1000,
        pool=args.pool,
        contenders=tuple(name.strip() for name in args.contenders.split(",") if name.strip()),
    )
    report = asyncio.run(run_peers(config, say=lambda message: print(message, flush=True)))
    report["command"] = "python -m bench peers " + " ".join(argv)
    print(
        f"\nPeers: one process, one Redis, a {report['payload_bytes']}-byte JSON value; "
        f"medians of {config.rounds} interleaved rounds ({config.ops} hits, "
        f"{config.duration:g} s at concurrency {config.concurrency}, {config.batch_ops} "
        f"batches of {config.batch_size}); cold key: {config.stampede_readers} readers, "
        f"loader {config.loader_delay * 1000:g} ms, {config.stampede_rounds} rounds "
        f"(loads per round). Pools of {config.pool} connections each. "
        f"Load average {report['machine']['load_average_before'][0]} before, "
        f"{report['machine']['load_average_after'][0]} after."
    )
    print(peers_table(report))
    print(
        "\nThe same libraries' plain read (cashews cache.get, aiocache get, ogcache "
        "Cache.get; no loader), timed in the same rounds:"
    )
    print(reads_table(report))
    print()
    for line in notes(report):
        print(line)
    print()
    for check in report["checks"]:
        verdict = {True: "PASS", False: "MISS", None: "N/A "}[check["passed"]]
        ratio = "" if check["ratio"] is None else f" (ratio {check['ratio']})"
        print(f"{verdict}  {check['check']}{ratio}: {check['detail']}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    chart = output.with_suffix(".png")
    save_chart(report, chart)
    print(f"\nsaved {output} and {chart} ({report['duration_s']} s)")
    return 0 if all(check["passed"] is not False for check in report["checks"]) else 1
