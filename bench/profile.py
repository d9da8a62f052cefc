"""Where a cache hit spends its time: pyinstrument over many hits of one key.

``python -m bench profile`` profiles three loops against the same Redis and the same 1 KB
JSON value, one after the other in one process:

- ``raw``: redis-py ``GET`` plus ``orjson.loads`` (the floor of a Redis hit);
- ``l2``: ``Cache.get_or_load`` hits of a namespace without the in-process tier;
- ``l1``: ``Cache.get_or_load`` hits served by the in-process tier.

Each profile is printed (the call tree, frames below 2% of the time hidden) and saved as
text under ``bench/results/profile-{raw,l2,l1}.txt``, with the mean time per hit. What the
tree of ``l2`` should show: nearly all time under redis-py's ``execute_command`` (the round
trip and the event loop), the cache's own frames a few percent. That is how the hot path was
trimmed: see ``bench/README.md``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from bench._support import redis_url
from ogcache.cache import Cache, Namespace, RedisBackend

RESULTS = Path(__file__).resolve().parent / "results"

PAYLOAD: dict[str, Any] = {
    "user_id": "web_demo_alice",
    "display_name": "Alice",
    "preferences": {f"pref_{i}": "x" * 20 for i in range(30)},
}


async def _profile(name: str, hits: int, call: Callable[[], Awaitable[object]]) -> str:
    from pyinstrument import Profiler  # the bench group's; the other commands do without

    for _ in range(min(hits, 1000)):  # warm: connections open, feed live, code paths hot
        await call()
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    started = time.perf_counter()
    profiler.start()
    for _ in range(hits):
        await call()
    profiler.stop()
    per_hit_us = (time.perf_counter() - started) / hits * 1e6
    text = profiler.output_text(unicode=True, color=False, show_all=False, time="percent_of_total")
    header = f"# {name}: {hits} hits, {per_hit_us:.2f} µs per hit (under the profiler)\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"profile-{name}.txt").write_text(header + text)
    return header + text


async def run(hits: int = 20_000) -> list[str]:
    url = redis_url()
    prefix = f"bench-profile-{uuid.uuid4().hex[:8]}"
    raw = Redis.from_url(url)
    cache = Cache(RedisBackend(url), prefix=prefix)
    plain: Namespace[dict[str, Any]] = Namespace("plain", ttl=600)
    local: Namespace[dict[str, Any]] = Namespace("local", ttl=600, local_ttl=600)
    raw_key = f"{prefix}:raw"
    try:
        await raw.set(raw_key, orjson.dumps(PAYLOAD), ex=600)

        async def load() -> dict[str, Any]:
            return PAYLOAD

        async def raw_hit() -> object:
            data = await raw.get(raw_key)
            assert data is not None
            return orjson.loads(data)

        async def l2_hit() -> object:
            return await cache.get_or_load(plain, "k", load)

        async def l1_hit() -> object:
            return await cache.get_or_load(local, "k", load)

        await l2_hit()
        await l1_hit()
        for _ in range(500):  # until the invalidation feed is live and the tier serves
            before = cache.stats()[local.name].local_hits
            await l1_hit()
            if cache.stats()[local.name].local_hits > before:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("the in-process tier never served: is the feed connecting?")
        reports = [
            await _profile("raw", hits, raw_hit),
            await _profile("l2", hits, l2_hit),
            await _profile("l1", hits * 10, l1_hit),
        ]
        misses = cache.stats()[plain.name].misses + cache.stats()[local.name].misses
        if misses > 2:
            raise RuntimeError(f"{misses} misses during a hit profile")
        return reports
    finally:
        await cache.clear()
        await cache.close()
        await raw.delete(raw_key)
        await raw.aclose()
