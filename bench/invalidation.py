"""Invalidation bench: how long an invalidation takes to reach another process's L1 tier.

Two OS processes (spawned): a *writer* W and a *reader* R, each with its own
``Cache(RedisBackend(url), prefix=...)`` and a namespace with a ``local_ttl``. For every
round, W stores fresh keys, R reads them until all are served from its L1, then W
invalidates them one at a time, paced ``interval`` apart, and R notes when each key's
notification was processed and the key left its L1. Both processes read
``time.monotonic()`` (CLOCK_MONOTONIC, one clock for the whole machine on Linux), so
``delay = R's eviction - W's return from the invalidation call`` (negative when the
notification overtook the writer's own reply), and ``- W's call start`` (always positive).
Every round uses keys of its own, so each key is named by exactly one notification during
the measurement.

Contenders, run in interleaved rounds in the same two processes:

- ``tracking``: what ogcache ships. W calls ``Cache.delete`` (one ``UNLINK``); Redis itself
  notifies R's feed (``CLIENT TRACKING ... BCAST``, ``redis_tracking.py``).
- ``tracking-raw``: the same, but W sends a bare ``UNLINK`` with redis-py: the writer's cost
  without ogcache's bookkeeping, to compare with the next one.
- ``pubsub``: the alternative. W sends ``UNLINK`` and ``PUBLISH <channel> <key>`` in one
  pipeline; R's feed subscribes to that channel. R's side is ogcache's own feed with only
  the subscription changed (:class:`PubSubFeed`, same relay loop, heartbeat and L1), so
  the two rows compare the mechanisms, not two client libraries.
- ``tracking-loaded`` / ``pubsub-loaded``: as ``tracking`` / ``pubsub`` while R is busy:
  ``load_tasks`` tasks serve L1 hits back to back and every tenth iteration make a Redis
  read, on the event loop the feed shares.

R also reads, while W invalidates, the key due next (from L1 until it is evicted) and the
one before it (from Redis once evicted): once a millisecond when idle, continuously when
loaded. A *stale read* is one that started after W's call had returned and still got the
value (W publishes its return times in shared memory); its lateness is how long after.
A read that got the value after R had processed the key's notification would be a bug
(``after eviction``, must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from bench._support import Gate, machine, quantile, run_processes, unique_name
from bench._support import redis_url as default_redis_url
from ogcache.cache import MISSING, Cache, Namespace, RedisBackend
from ogcache.cache.backends.redis_tracking import ConnectionFactory, RedisTrackingFeed
from ogcache.cache.invalidation import OnChange

__all__ = [
    "CONTENDERS",
    "Contender",
    "ContenderSummary",
    "InvalidationReport",
    "ObservedFeed",
    "PubSubFeed",
    "add_parser",
    "command",
    "run_invalidation",
]

Mechanism = Literal["tracking", "pubsub"]
Writer = Literal["Cache.delete", "UNLINK", "UNLINK+PUBLISH", "PEXPIRE 1ms"]

ITEMS: Namespace[dict[str, int]] = Namespace("inv", ttl=300, local_ttl=60)
BACKGROUND: Namespace[dict[str, int]] = Namespace("bg", ttl=300)  # the loaded reader's L2 reads
_BACKGROUND_KEYS: Final = 16
_IDLE_READ_INTERVAL: Final = 0.001
_LOADED_REDIS_EVERY: Final = 10
_STALL: Final = 0.005  # the reader's event loop late by more than this: a stall
RESULTS: Final = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Contender:
    """``coverage``: a change the mechanism may not report (delivery is the finding, not
    a check); these run ``coverage_rounds`` times, after the others."""

    name: str
    mechanism: Mechanism
    writer: Writer
    loaded: bool
    coverage: bool = False


CONTENDERS: Final = (
    Contender("tracking", "tracking", "Cache.delete", loaded=False),
    Contender("tracking-raw", "tracking", "UNLINK", loaded=False),
    Contender("pubsub", "pubsub", "UNLINK+PUBLISH", loaded=False),
    Contender("tracking-loaded", "tracking", "Cache.delete", loaded=True),
    Contender("pubsub-loaded", "pubsub", "UNLINK+PUBLISH", loaded=True),
    Contender("tracking-expiry", "tracking", "PEXPIRE 1ms", loaded=False, coverage=True),
    Contender("pubsub-raw", "pubsub", "UNLINK", loaded=False, coverage=True),
    Contender("pubsub-expiry", "pubsub", "PEXPIRE 1ms", loaded=False, coverage=True),
)
_BY_NAME: Final = {contender.name: contender for contender in CONTENDERS}


# --- R's feeds: ogcache's, observed; the pub/sub alternative ------------------------------

Nodes = Callable[[], Mapping[str, ConnectionFactory]]


class ObservedFeed(RedisTrackingFeed):
    """ogcache's invalidation feed (key tracking), unchanged but for one thing: every
    notification is handed to ``observer`` together with the cache's own callback, which the
    observer calls. So R sees each notification the moment its cache processes it."""

    def __init__(self, prefix: str, nodes: Nodes, observer: _Observer) -> None:
        super().__init__(prefix, nodes)
        self._observer = observer

    def start(self, on_change: OnChange) -> None:
        def changed(keys: Sequence[str] | None) -> None:
            self._observer.changed(self, on_change, keys)

        super().start(changed)


class PubSubFeed(ObservedFeed):
    """ogcache's invalidation feed with a plain pub/sub channel instead of key tracking.

    Writers publish the names of the keys they invalidated (newline-separated) on
    ``channel``. Everything else (reconnection, heartbeat, liveness, what the cache does with
    a notification) is :class:`RedisTrackingFeed`'s, so only the mechanism differs.
    """

    def __init__(self, channel: bytes, nodes: Nodes, observer: _Observer) -> None:
        super().__init__("", nodes, observer)
        self._channel = channel

    async def _track(self, connection: AbstractConnection) -> None:
        pass  # no key tracking: the writers publish

    def _keys(self, payload: Any) -> list[str] | None:
        return bytes(payload).decode().split("\n")


class ObservedRedisBackend(RedisBackend):
    """A :class:`RedisBackend` whose invalidation feed is an :class:`ObservedFeed` (key
    tracking), or with a ``channel`` a :class:`PubSubFeed` on it. The cache asks its backend
    for the feed (the public ``InvalidationSource`` contract); ``feed`` is the one it got."""

    def __init__(self, url: str, observer: _Observer, channel: str | None = None) -> None:
        super().__init__(url)
        self._observer = observer
        self._pubsub_channel = None if channel is None else channel.encode()
        self.feed: ObservedFeed | None = None

    def invalidation_feed(self, prefix: str) -> ObservedFeed:
        if self._pubsub_channel is None:
            self.feed = ObservedFeed(prefix, self._tracking_nodes, self._observer)
        else:
            self.feed = PubSubFeed(self._pubsub_channel, self._tracking_nodes, self._observer)
        return self.feed


# --- the two processes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Config:
    redis_url: str
    tracking_prefix: str
    pubsub_prefix: str
    channel: str
    schedule: tuple[str, ...]  # contender name of each round, in order
    keys: int
    interval: float
    load_tasks: int
    slack: float
    coverage_wait: float


def _round_keys(round_index: int, keys: int) -> list[str]:
    return [f"r{round_index}k{i}" for i in range(keys)]


_STAGES: Final = (
    "starting",
    "ready",
    "warming",
    "invalidating",
    "waiting",
    "collecting",
    "closing",
    "closing feeds",
    "done",
)


def _worker(
    role: str,
    config: _Config,
    gate: Gate,
    to_reader: Any,
    to_writer: Any,
    returned: Any,
    progress: Any,
) -> None:
    """One process; ``progress[0 or 1]`` = round * 10 + stage, for the parent's diagnosis of
    a run that does not finish."""
    slot = 0 if role == "writer" else 1

    def stage(name: str, round_index: int = 0) -> None:
        progress[slot] = round_index * 10 + _STAGES.index(name)

    try:
        work = _write if role == "writer" else _read
        result = asyncio.run(work(config, gate, to_reader, to_writer, returned, stage))
        gate.send((role, result))
    except BaseException:
        gate.fail()


def _where(progress: Any) -> str:
    return ", ".join(
        f"{role} in round {int(value) // 10} {_STAGES[int(value) % 10]}"
        for role, value in zip(("writer", "reader"), progress, strict=True)
    )


async def _receive(queue: Any, expected: str) -> tuple[Any, ...]:
    message: tuple[Any, ...] = await asyncio.to_thread(queue.get, True, 120.0)
    if message[0] != expected:
        raise RuntimeError(f"expected {expected!r} from the other process, got {message!r}")
    return message


async def _write(
    config: _Config, gate: Gate, to_reader: Any, to_writer: Any, returned: Any, stage: Any
) -> dict[str, Any]:
    caches = {
        "tracking": Cache(RedisBackend(config.redis_url), prefix=config.tracking_prefix),
        "pubsub": Cache(RedisBackend(config.redis_url), prefix=config.pubsub_prefix),
    }
    client = Redis.from_url(config.redis_url)
    channel = config.channel.encode()
    rounds: list[dict[str, Any]] = []
    try:
        for cache in caches.values():
            await cache.ping()
        await client.ping()
        gate.ready()
        stage("ready")
        await asyncio.to_thread(gate.wait_start, 120.0)
        for round_index, name in enumerate(config.schedule):
            contender = _BY_NAME[name]
            cache = caches[contender.mechanism]
            keys = _round_keys(round_index, config.keys)
            fulls = [cache.full_key(ITEMS, key) for key in keys]
            await cache.set_many(
                ITEMS, {key: {"round": round_index, "i": i} for i, key in enumerate(keys)}
            )
            to_reader.put(("round", round_index, name, keys))
            stage("warming", round_index)
            await _receive(to_writer, "warmed")
            stage("invalidating", round_index)
            await asyncio.sleep(0.02)
            base = round_index * config.keys
            starts: list[float] = []
            ends: list[float] = []
            failed = 0
            next_at = time.monotonic()
            for i, key in enumerate(keys):
                pause = next_at - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                started = time.monotonic()
                if contender.writer == "Cache.delete":
                    failed += not await cache.delete(ITEMS, key)
                elif contender.writer == "UNLINK":
                    await client.unlink(fulls[i])
                elif contender.writer == "PEXPIRE 1ms":
                    await client.pexpire(fulls[i], 1)
                else:
                    async with client.pipeline(transaction=False) as pipe:
                        pipe.unlink(fulls[i])
                        pipe.publish(channel, fulls[i])
                        await pipe.execute()
                ended = time.monotonic()
                returned[base + i] = ended
                starts.append(started)
                ends.append(ended)
                next_at = started + config.interval
            to_reader.put(("done", round_index))
            stage("collecting", round_index)
            await _receive(to_writer, "collected")
            rounds.append(
                {
                    "round": round_index,
                    "contender": name,
                    "starts": starts,
                    "ends": ends,
                    "failed": failed,
                }
            )
        to_reader.put(("stop",))
        stage("done")
    finally:
        for cache in caches.values():
            await cache.close()
        await client.aclose()
    return {"rounds": rounds}


@dataclass(slots=True)
class _Round:
    """R's view of one round, filled by the notification hook and the reading tasks."""

    cache: Cache
    feed: ObservedFeed
    keys: list[str]
    base: int
    index: dict[str, int]
    evicted: list[float]
    was_in_l1: list[bool]
    next_due: int = 0
    delivered: int = 0
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    flushes: int = 0
    reads: int = 0
    value_reads: int = 0
    stale_reads: int = 0
    stale_over_slack: int = 0
    stale_late_max: float = 0.0
    after_eviction: int = 0
    stalls: int = 0
    stalls_descheduled: int = 0
    stall_max: float = 0.0
    stopped_for: float = 0.0
    stop: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _l1_invalidations(cache: Cache) -> int:
    """How many invalidations found their key in the cache's L1 so far."""
    local = cache.local_state()
    return 0 if local is None else local[0].invalidations


async def _l1_hits(cache: Cache, keys: Sequence[str]) -> int:
    """How many of ``keys`` a read serves from the cache's L1 now (the others are read from
    Redis, and kept in L1 if found)."""

    def local_hits() -> int:
        stats = cache.stats().get(ITEMS.name)
        return 0 if stats is None else stats.local_hits

    before = local_hits()
    await cache.get_many(ITEMS, keys)
    return local_hits() - before


class _Observer:
    """Sees every notification of R's feeds (:class:`ObservedFeed`) as the cache processes
    it: records when each key of the round left L1, and whether it was there."""

    def __init__(self) -> None:
        self.current: _Round | None = None

    def changed(self, feed: ObservedFeed, on_change: OnChange, keys: Sequence[str] | None) -> None:
        state = self.current
        if state is None or state.feed is not feed:
            on_change(keys)
            return
        if keys is None:
            on_change(keys)
            state.flushes += 1
            return
        # One key at a time (as the tier would): whether each was in L1 is whether the
        # tier counted an invalidation of an entry it held.
        present = []
        for full in keys:
            before = _l1_invalidations(state.cache)
            on_change([full])
            present.append(_l1_invalidations(state.cache) > before)
        now = time.monotonic()
        for full, was_present in zip(keys, present, strict=True):
            i = state.index.get(full)
            if i is not None and not state.evicted[i]:
                state.evicted[i] = now
                state.was_in_l1[i] = was_present
                state.delivered += 1
                if state.delivered == len(state.keys):
                    state.complete.set()
        while state.next_due < len(state.keys) and state.evicted[state.next_due]:
            state.next_due += 1


async def _close(cache: Cache) -> int:
    """``cache.close()``; the times the feed's relay tasks had to be cancelled again.

    On Python 3.11, redis-py sends under ``asyncio.wait_for`` (the connection has a socket
    timeout), which returns normally when the caller is cancelled just as the send
    completes; a cancellation that lands on the relay's heartbeat ``PING`` is then lost and
    ``RedisTrackingFeed.close()`` waits for the relay forever. Cancelling it again ends it.
    """
    closing = asyncio.ensure_future(cache.close())
    retries = 0
    while True:
        done, _ = await asyncio.wait({closing}, timeout=1.0)
        if done:
            closing.result()
            return retries
        for task in asyncio.all_tasks():
            if task.get_name().startswith("feed ") and task.cancelling():
                retries += 1
                task.cancel()


async def _warm(cache: Cache, keys: list[str]) -> int:
    """Read ``keys`` until every one is served from the cache's L1 and stays there; the
    rounds of reads made."""
    deadline = time.monotonic() + 30.0
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        await cache.get_many(ITEMS, keys)
        if await _l1_hits(cache, keys) == len(keys):
            # Notifications of W's writes may still be on their way: settle, then check again.
            await asyncio.sleep(0.03)
            if await _l1_hits(cache, keys) == len(keys):
                return attempts
        else:
            await asyncio.sleep(0.005)
    raise TimeoutError("the reader could not get the round's keys into its L1 within 30 s")


async def _read(
    config: _Config, gate: Gate, to_reader: Any, to_writer: Any, returned: Any, stage: Any
) -> dict[str, Any]:
    observer = _Observer()
    backends = {
        "tracking": ObservedRedisBackend(config.redis_url, observer),
        "pubsub": ObservedRedisBackend(config.redis_url, observer, channel=config.channel),
    }
    caches = {
        "tracking": Cache(backends["tracking"], prefix=config.tracking_prefix),
        "pubsub": Cache(backends["pubsub"], prefix=config.pubsub_prefix),
    }
    background = caches["tracking"]
    background_keys = [f"b{i}" for i in range(_BACKGROUND_KEYS)]
    slack = config.slack

    async def read(state: _Round, i: int) -> None:
        started = time.monotonic()
        value = await state.cache.get(ITEMS, state.keys[i])
        state.reads += 1
        if value is MISSING:
            return
        state.value_reads += 1
        if state.evicted[i] and started >= state.evicted[i]:
            state.after_eviction += 1
        ended = returned[state.base + i]
        if ended and started > ended:
            late = started - ended
            state.stale_reads += 1
            state.stale_over_slack += late > slack
            state.stale_late_max = max(state.stale_late_max, late)

    async def idle_reader(state: _Round) -> None:
        while not state.stop:
            due = state.next_due
            if due < len(state.keys):
                await read(state, due)
            if due > 0:
                await read(state, due - 1)
            await asyncio.sleep(_IDLE_READ_INTERVAL)

    async def busy_reader(state: _Round, seed: int) -> None:
        iteration = seed
        while not state.stop:
            iteration += 1
            due = state.next_due
            if due < len(state.keys):
                await read(state, due)
            if iteration % _LOADED_REDIS_EVERY == 0:
                await background.get(BACKGROUND, background_keys[iteration % _BACKGROUND_KEYS])
                if due > 0:
                    await read(state, due - 1)
            else:
                await asyncio.sleep(0)

    async def monitor(state: _Round) -> None:
        """Notes every stretch of more than 5 ms in which this event loop did not run, and
        whether the process was descheduled then (little CPU time used) or busy."""
        while not state.stop:
            wall, cpu = time.monotonic(), time.thread_time()
            await asyncio.sleep(0.001)
            lag = time.monotonic() - wall - 0.001
            if lag > _STALL:
                state.stalls += 1
                state.stalls_descheduled += time.thread_time() - cpu < lag / 2
                state.stall_max = max(state.stall_max, lag)
                state.stopped_for += lag

    rounds: list[dict[str, Any]] = []
    try:
        await background.set_many(
            BACKGROUND, {key: {"i": i} for i, key in enumerate(background_keys)}
        )
        deadline = time.monotonic() + 10.0
        for cache in caches.values():
            while True:  # the first lookup starts the feed; it serves once subscribed
                await cache.get(ITEMS, "absent")
                local = cache.local_state()
                if local is not None and local[1]:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("an invalidation feed did not subscribe within 10 s")
                await asyncio.sleep(0.01)
        gate.ready()
        stage("ready")
        await asyncio.to_thread(gate.wait_start, 120.0)
        while True:
            message = await asyncio.to_thread(to_reader.get, True, 120.0)
            if message[0] == "stop":
                stage("closing")
                break
            _, round_index, name, keys = message
            contender = _BY_NAME[name]
            cache = caches[contender.mechanism]
            feed = backends[contender.mechanism].feed
            assert feed is not None  # made by the cache's constructor
            stage("warming", round_index)
            warm_reads = await _warm(cache, keys)
            stage("invalidating", round_index)
            state = _Round(
                cache=cache,
                feed=feed,
                keys=keys,
                base=round_index * config.keys,
                index={cache.full_key(ITEMS, key): i for i, key in enumerate(keys)},
                evicted=[0.0] * len(keys),
                was_in_l1=[False] * len(keys),
            )
            local = cache.local_state()
            entries_after_warm = 0 if local is None else local[0].entries
            local_hits_before = cache.stats()[ITEMS.name].local_hits
            observer.current = state
            if contender.loaded:
                state.tasks = [
                    asyncio.create_task(busy_reader(state, seed))
                    for seed in range(config.load_tasks)
                ]
            else:
                state.tasks = [asyncio.create_task(idle_reader(state))]
            state.tasks.append(asyncio.create_task(monitor(state)))
            began = time.monotonic()
            to_writer.put(("warmed", round_index))
            await _receive(to_reader, "done")
            stage("waiting", round_index)
            if contender.coverage:  # the full time: a key may come back and leave again
                await asyncio.sleep(config.coverage_wait)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.complete.wait(), 2.0)  # else: some were lost
            state.stop = True
            await asyncio.gather(*state.tasks)
            observer.current = None
            seconds = time.monotonic() - began
            local_hits = cache.stats()[ITEMS.name].local_hits - local_hits_before
            still_in_l1 = await _l1_hits(cache, keys)  # (its own hits not counted above)
            rounds.append(
                {
                    "round": round_index,
                    "contender": name,
                    "evicted": state.evicted,
                    "was_in_l1": state.was_in_l1,
                    "warm_reads": warm_reads,
                    "l1_entries_after_warm": entries_after_warm,
                    "local_hits": local_hits,
                    "flushes": state.flushes,
                    "reads": state.reads,
                    "value_reads": state.value_reads,
                    "stale_reads": state.stale_reads,
                    "stale_over_slack": state.stale_over_slack,
                    "stale_late_max": state.stale_late_max,
                    "after_eviction": state.after_eviction,
                    "stalls": state.stalls,
                    "stalls_descheduled": state.stalls_descheduled,
                    "stall_max": state.stall_max,
                    "stopped_for": state.stopped_for,
                    "seconds": seconds,
                    "still_in_l1": still_in_l1,
                }
            )
            to_writer.put(("collected", round_index))
            stage("collecting", round_index)
        feeds = {
            mechanism: {
                "messages": None if backend.feed is None else backend.feed.messages,
                "reconnects": None if backend.feed is None else backend.feed.reconnects,
            }
            for mechanism, backend in backends.items()
        }
    finally:
        stage("closing feeds")
        close_retries = [await _close(cache) for cache in caches.values()]
    stage("done")
    return {"rounds": rounds, "feeds": feeds, "feed_close_retries": sum(close_retries)}


# --- the parent: run, summarize, report --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spread:
    """Milliseconds; nearest-rank quantiles."""

    count: int
    min_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Spread:
        ordered = sorted(seconds)

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 4)

        return cls(
            count=len(ordered),
            min_ms=ms(ordered[0] if ordered else None),
            p50_ms=ms(quantile(ordered, 0.50)),
            p90_ms=ms(quantile(ordered, 0.90)),
            p99_ms=ms(quantile(ordered, 0.99)),
            max_ms=ms(ordered[-1] if ordered else None),
        )


@dataclass(frozen=True, slots=True)
class ContenderSummary:
    contender: str
    mechanism: str
    writer: str
    reader: str
    coverage: bool
    rounds: int
    invalidations: int
    delivered: int
    lost: int
    still_in_l1_at_end: int
    early: int
    not_in_l1: int
    flushes: int
    writer_failures: int
    delay_after_return: Spread
    delay_after_call_start: Spread
    writer_call: Spread
    round_p50_ms: list[float]
    reads: int
    reads_per_s: float
    local_hits: int
    stale_reads: int
    stale_reads_over_slack: int
    stale_late_max_ms: float
    reads_after_eviction: int
    reader_stalls: int
    reader_stalls_descheduled: int
    reader_stall_max_ms: float
    reader_stalled_share: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class InvalidationReport:
    keys_per_round: int
    rounds_per_contender: int
    coverage_rounds: int
    interval_ms: float
    load_tasks: int
    slack_ms: float
    seconds: float
    feeds: dict[str, Any]
    feed_close_retries: int
    contenders: list[ContenderSummary]
    checks: dict[str, bool]

    def summary(self, name: str) -> ContenderSummary:
        return next(c for c in self.contenders if c.contender == name)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "contenders": [c.as_dict() for c in self.contenders]}


def _summarize(
    contender: Contender, writes: list[dict[str, Any]], reads: list[dict[str, Any]]
) -> ContenderSummary:
    after_return: list[float] = []
    after_start: list[float] = []
    calls: list[float] = []
    round_p50: list[float] = []
    lost = early = not_in_l1 = 0
    for written, seen in zip(writes, reads, strict=True):
        assert written["round"] == seen["round"]
        delays = []
        for started, ended, evicted, in_l1 in zip(
            written["starts"], written["ends"], seen["evicted"], seen["was_in_l1"], strict=True
        ):
            calls.append(ended - started)
            if not evicted:
                lost += 1
                continue
            early += evicted < started
            not_in_l1 += not in_l1
            delays.append(evicted - ended)
            after_start.append(evicted - started)
        after_return.extend(delays)
        if delays:
            round_p50.append(round(statistics.median(delays) * 1000, 4))
    invalidations = sum(len(w["starts"]) for w in writes)
    seconds = sum(r["seconds"] for r in reads)
    reads_total = sum(r["reads"] for r in reads)
    return ContenderSummary(
        contender=contender.name,
        mechanism=contender.mechanism,
        writer=contender.writer,
        reader="loaded" if contender.loaded else "idle",
        coverage=contender.coverage,
        rounds=len(writes),
        invalidations=invalidations,
        delivered=invalidations - lost,
        lost=lost,
        still_in_l1_at_end=sum(r["still_in_l1"] for r in reads),
        early=early,
        not_in_l1=not_in_l1,
        flushes=sum(r["flushes"] for r in reads),
        writer_failures=sum(w["failed"] for w in writes),
        delay_after_return=Spread.of(after_return),
        delay_after_call_start=Spread.of(after_start),
        writer_call=Spread.of(calls),
        round_p50_ms=round_p50,
        reads=reads_total,
        reads_per_s=round(reads_total / seconds, 1) if seconds else 0.0,
        local_hits=sum(r["local_hits"] for r in reads),
        stale_reads=sum(r["stale_reads"] for r in reads),
        stale_reads_over_slack=sum(r["stale_over_slack"] for r in reads),
        stale_late_max_ms=round(max((r["stale_late_max"] for r in reads), default=0.0) * 1000, 4),
        reads_after_eviction=sum(r["after_eviction"] for r in reads),
        reader_stalls=sum(r["stalls"] for r in reads),
        reader_stalls_descheduled=sum(r["stalls_descheduled"] for r in reads),
        reader_stall_max_ms=round(max((r["stall_max"] for r in reads), default=0.0) * 1000, 1),
        reader_stalled_share=round(sum(r["stopped_for"] for r in reads) / seconds, 4)
        if seconds
        else 0.0,
    )


async def _clean_up(redis_url: str, prefixes: Sequence[str]) -> None:
    backend = RedisBackend(redis_url)
    try:
        for prefix in prefixes:
            await backend.delete_prefix(f"{prefix}:")
    finally:
        await backend.close()


def run_invalidation(
    *,
    redis_url: str | None = None,
    contenders: Sequence[str] = tuple(_BY_NAME),
    rounds: int = 10,
    keys: int = 100,
    interval: float = 0.003,
    load_tasks: int = 16,
    slack: float = 0.001,
    coverage_rounds: int = 1,
    coverage_wait: float = 2.0,
    timeout: float | None = None,
) -> InvalidationReport:
    """``rounds`` rounds of ``keys`` invalidations per contender, the contenders' rounds
    interleaved (round-robin), in one writer and one reader process; then
    ``coverage_rounds`` of each coverage contender, whose rounds wait at most
    ``coverage_wait`` seconds for notifications that may never come."""
    unknown = [name for name in contenders if name not in _BY_NAME]
    if unknown:
        raise ValueError(f"unknown contenders {unknown}; known: {sorted(_BY_NAME)}")
    if rounds < 1 or keys < 1 or interval <= 0 or coverage_rounds < 0:
        raise ValueError("rounds and keys must be >= 1, interval > 0, coverage_rounds >= 0")
    redis = redis_url or default_redis_url()
    base = unique_name("invalidation")
    main = [name for name in contenders if not _BY_NAME[name].coverage]
    coverage = [name for name in contenders if _BY_NAME[name].coverage]
    schedule = tuple(name for _ in range(rounds) for name in main) + tuple(
        name for _ in range(coverage_rounds) for name in coverage
    )
    contenders = [name for name in contenders if name in schedule]
    config = _Config(
        redis_url=redis,
        tracking_prefix=f"{base}.t",
        pubsub_prefix=f"{base}.p",
        channel=f"{base}.p:invalidations",
        schedule=schedule,
        keys=keys,
        interval=interval,
        load_tasks=load_tasks,
        slack=slack,
        coverage_wait=coverage_wait,
    )
    ctx = multiprocessing.get_context("spawn")
    to_reader = ctx.Queue()
    to_writer = ctx.Queue()
    returned = ctx.Array("d", len(schedule) * keys, lock=False)
    progress = ctx.Array("d", 2, lock=False)
    if timeout is None:
        timeout = 60.0 + len(schedule) * (keys * interval * 2 + 2.0)
    roles = ("writer", "reader")
    began = time.monotonic()
    try:
        outcomes = run_processes(
            _worker,
            lambda index, gate: (
                roles[index],
                config,
                gate,
                to_reader,
                to_writer,
                returned,
                progress,
            ),
            2,
            timeout=timeout,
        )
    except TimeoutError as exc:
        raise TimeoutError(f"{exc} ({_where(progress)})") from exc
    finally:
        asyncio.run(_clean_up(redis, (config.tracking_prefix, config.pubsub_prefix)))
    seconds = time.monotonic() - began
    by_role = dict(outcomes)
    writes, reads = by_role["writer"]["rounds"], by_role["reader"]["rounds"]
    summaries = [
        _summarize(
            _BY_NAME[name],
            [w for w in writes if w["contender"] == name],
            [r for r in reads if r["contender"] == name],
        )
        for name in contenders
    ]
    checks = {}
    for s in summaries:
        if s.coverage:  # PEXPIRE: the key is still in Redis, to be read again, for 1 ms
            continue
        checks[f"{s.contender}: every invalidation reached the reader's L1"] = s.lost == 0
        checks[f"{s.contender}: no value read after the reader evicted it"] = (
            s.reads_after_eviction == 0
        )
    return InvalidationReport(
        keys_per_round=keys,
        rounds_per_contender=rounds,
        coverage_rounds=coverage_rounds,
        interval_ms=interval * 1000,
        load_tasks=load_tasks,
        slack_ms=slack * 1000,
        seconds=round(seconds, 1),
        feeds=by_role["reader"]["feeds"],
        feed_close_retries=by_role["reader"]["feed_close_retries"],
        contenders=summaries,
        checks=checks,
    )


# --- the command -------------------------------------------------------------------------


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(report: InvalidationReport) -> str:
    header = (
        f"{'contender':<16} {'writer':<14} {'R':<6} {'inval':>5} {'lost':>4} {'kept':>4} "
        f"{'p50':>6} {'p99':>6} {'max':>6} {'s p50':>6} {'s p99':>6} "
        f"{'w p50':>6} {'w p99':>6} {'stale':>5} {'>slack':>6} {'late':>6} "
        f"{'stalls':>6} {'stall':>6} {'reads/s':>7}"
    )
    lines = [header, "-" * len(header)]
    for index, s in enumerate(report.contenders):
        if s.coverage and (index == 0 or not report.contenders[index - 1].coverage):
            lines.append("- coverage: changes the mechanism may not report " + "-" * 30)
        d, st, w = s.delay_after_return, s.delay_after_call_start, s.writer_call
        lines.append(
            f"{s.contender:<16} {s.writer:<14} {s.reader:<6} {s.invalidations:>5} {s.lost:>4} "
            f"{s.still_in_l1_at_end:>4} "
            f"{_f(d.p50_ms):>6} {_f(d.p99_ms):>6} {_f(d.max_ms, 1):>6} "
            f"{_f(st.p50_ms):>6} {_f(st.p99_ms):>6} {_f(w.p50_ms):>6} {_f(w.p99_ms):>6} "
            f"{s.stale_reads:>5} {s.stale_reads_over_slack:>6} {_f(s.stale_late_max_ms, 1):>6} "
            f"{s.reader_stalls:>6} {_f(s.reader_stall_max_ms, 1):>6} {s.reads_per_s:>7.0f}"
        )
    return "\n".join(lines)


def ratios(report: InvalidationReport) -> dict[str, float]:
    """pub/sub over tracking, from the same run; absent if a contender did not run."""
    names = {s.contender for s in report.contenders}
    found: dict[str, float] = {}

    def ratio(label: str, numerator: float | None, denominator: float | None) -> None:
        if numerator is not None and denominator:
            found[label] = round(numerator / denominator, 2)

    for suffix in ("", "-loaded"):
        if {f"tracking{suffix}", f"pubsub{suffix}"} <= names:
            t, p = report.summary(f"tracking{suffix}"), report.summary(f"pubsub{suffix}")
            for q in ("p50_ms", "p99_ms"):
                ratio(
                    f"delay {q[:3]} pubsub{suffix} / tracking{suffix} (from call start)",
                    getattr(p.delay_after_call_start, q),
                    getattr(t.delay_after_call_start, q),
                )
    if {"tracking-raw", "pubsub"} <= names:
        raw, pub = report.summary("tracking-raw"), report.summary("pubsub")
        ratio("writer p50 UNLINK+PUBLISH / UNLINK", pub.writer_call.p50_ms, raw.writer_call.p50_ms)
        ratio(
            "delay p50 pubsub / tracking-raw (from call start)",
            pub.delay_after_call_start.p50_ms,
            raw.delay_after_call_start.p50_ms,
        )
    if {"tracking-raw", "tracking"} <= names:
        ours, raw = report.summary("tracking"), report.summary("tracking-raw")
        ratio("writer p50 Cache.delete / UNLINK", ours.writer_call.p50_ms, raw.writer_call.p50_ms)
    return found


def add_parser(commands: Any) -> None:
    """The ``invalidation`` subcommand, on ``python -m bench``'s subparsers."""
    parser = commands.add_parser(
        "invalidation",
        help="L1 invalidation delay across two processes: key tracking vs a pub/sub channel",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "contenders",
        nargs="*",
        metavar="CONTENDER",
        help=f"some of {', '.join(c.name for c in CONTENDERS)} (default: all)",
    )
    parser.add_argument("--rounds", type=int, default=10, help="rounds per contender")
    parser.add_argument("--keys", type=int, default=100, help="invalidations per round")
    parser.add_argument("--interval-ms", type=float, default=3.0, help="between invalidations")
    parser.add_argument("--load-tasks", type=int, default=16, help="the loaded reader's tasks")
    parser.add_argument(
        "--coverage-rounds", type=int, default=1, help="rounds per coverage contender (0: none)"
    )
    parser.add_argument(
        "--slack-ms", type=float, default=1.0, help="stale reads later than this are counted apart"
    )
    parser.add_argument("--output", default=str(RESULTS / "invalidation.json"))


def command(args: argparse.Namespace) -> int:
    """``python -m bench invalidation``: run, print the table, save JSON; 1 if a check failed."""
    contenders = args.contenders or [c.name for c in CONTENDERS]
    load_before = os.getloadavg()
    report = run_invalidation(
        contenders=contenders,
        rounds=args.rounds,
        keys=args.keys,
        interval=args.interval_ms / 1000,
        load_tasks=args.load_tasks,
        slack=args.slack_ms / 1000,
        coverage_rounds=args.coverage_rounds,
    )
    print(
        f"\n{report.rounds_per_contender} rounds x {report.keys_per_round} invalidations per "
        f"contender, rounds interleaved, {report.interval_ms:g} ms apart; loaded reader: "
        f"{report.load_tasks} tasks; then {report.coverage_rounds} round(s) per coverage "
        f"contender. Milliseconds. lost: never reached R; kept: still in R's L1 at the end "
        f"of the round. p50/p99/max: R's eviction - W's return; "
        f"s: R's eviction - W's call start; w: W's call; stale: reads begun after W's call "
        f"returned that still got the value (>slack: later than {report.slack_ms:g} ms; late: "
        f"the latest, after the return); stalls: times R's event loop ran more than "
        f"{_STALL * 1000:g} ms late (stall: the longest); reads/s: R's reads of the round's "
        f"keys."
    )
    print(table(report))
    found = ratios(report)
    for label, value in found.items():
        print(f"{label}: {value}")
    print()
    for check, passed in report.checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench invalidation " + " ".join(sys.argv[2:]),
        "machine": machine(load_before),
        "ratios": found,
        **report.as_dict(),
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nsaved {output} ({report.seconds} s)")
    return 0 if all(report.checks.values()) else 1
