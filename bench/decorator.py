"""``python -m bench.decorator``: does ``@cache.cached`` cost more on a hit than ``get_or_load``?

The same warm keys read three ways in one process: ``await user(user_id)`` through the
decorator; ``await cache.get_or_load(users, users.key(user_id), loader)`` written inline; and
that call inside an ``async def`` helper (what one writes instead of the decorator). On the
memory backend, on Redis (``OGCACHE_BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/0``),
and on Redis with the in-process tier (the cheapest hit, so the decorator's share is largest).
Rounds interleave the ways (rotating which goes first) so drift in the machine's load
hits both alike; each round records every call's latency. Reported: the median over rounds of
each round's p50 and mean, and the ratios decorator / inline and decorator / helper. Prints a
table and saves
``bench/results/decorator.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench._support import machine, redis_url
from ogcache.cache import Cache, CacheBackend, MemoryBackend, Namespace, RedisBackend

RESULTS = Path(__file__).resolve().parent / "results" / "decorator.json"
KEYS = 100


async def _load(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "name": f"user {user_id}", "tags": ["a", "b"]}


async def _timed(call: Callable[[int], Awaitable[object]], calls: int) -> list[float]:
    """Per-call latencies in microseconds, cycling through the warm keys."""
    clock = time.perf_counter_ns
    out = []
    for i in range(calls):
        user_id = i % KEYS
        start = clock()
        await call(user_id)
        out.append((clock() - start) / 1000)
    return out


async def _timed_inline(cache: Cache, users: Namespace[Any], calls: int) -> list[float]:
    """As :func:`_timed`, with ``get_or_load`` awaited right here: no function around it."""
    clock = time.perf_counter_ns
    out = []
    for i in range(calls):
        user_id = i % KEYS
        start = clock()
        await cache.get_or_load(users, users.key(user_id), lambda: _load(user_id))  # noqa: B023
        out.append((clock() - start) / 1000)
    return out


async def _compare(
    backend: CacheBackend, local_ttl: float, rounds: int, calls: int
) -> dict[str, Any]:
    async with Cache(backend, prefix=f"bench-deco-{uuid.uuid4().hex[:8]}") as cache:
        users: Namespace[Any] = Namespace("user", ttl=600, local_ttl=local_ttl)

        @cache.cached(users, key="{user_id}")
        async def user(user_id: int) -> dict[str, Any]:
            return await _load(user_id)

        async def helper(user_id: int) -> dict[str, Any]:
            value: dict[str, Any] = await cache.get_or_load(
                users, users.key(user_id), lambda: _load(user_id)
            )
            return value

        for user_id in range(KEYS):  # warm: every way reads the same entries
            await user(user_id)
            assert await helper(user_id) == await _load(user_id)
        ways: dict[str, Callable[[], Awaitable[list[float]]]] = {
            "decorator": lambda: _timed(user, calls),
            "inline": lambda: _timed_inline(cache, users, calls),
            "helper": lambda: _timed(helper, calls),
        }
        for way in ways.values():  # warm-up of the code paths, not measured
            await way()
        p50s: dict[str, list[float]] = {name: [] for name in ways}
        means: dict[str, list[float]] = {name: [] for name in ways}
        names = list(ways)
        for round_ in range(rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                latencies = await ways[name]()
                p50s[name].append(statistics.median(latencies))
                means[name].append(statistics.fmean(latencies))
        stats = cache.stats()["user"]
        assert stats.misses == KEYS, "every measured call must be a hit"
        p50 = {name: statistics.median(values) for name, values in p50s.items()}
        mean = {name: statistics.median(values) for name, values in means.items()}
        return {
            "p50_us": {name: round(value, 2) for name, value in p50.items()},
            "mean_us": {name: round(value, 2) for name, value in mean.items()},
            "ratio_p50": {
                f"decorator/{name}": round(p50["decorator"] / p50[name], 3)
                for name in ("inline", "helper")
            },
            "ratio_mean": {
                f"decorator/{name}": round(mean["decorator"] / mean[name], 3)
                for name in ("inline", "helper")
            },
        }


async def run(rounds: int, calls: int) -> dict[str, Any]:
    load_before = os.getloadavg()
    url = redis_url()
    cases: dict[str, Callable[[], CacheBackend]] = {
        "memory": MemoryBackend,
        "redis": lambda: RedisBackend(url),
        "redis + L1": lambda: RedisBackend(url),
    }
    results: dict[str, Any] = {}
    for name, make in cases.items():
        local_ttl = 60.0 if name.endswith("L1") else 0.0
        results[name] = await _compare(make(), local_ttl, rounds, calls)
    return {
        "rounds": rounds,
        "calls_per_round": calls,
        "keys": KEYS,
        "cases": results,
        "machine": machine(load_before),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.decorator", description=__doc__)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--calls", type=int, default=2000, help="calls per way per round")
    args = parser.parse_args()
    report = asyncio.run(run(args.rounds, args.calls))
    print(f"{'case':<12} {'way':<22} {'p50 µs':>8} {'mean µs':>8}")
    for case, result in report["cases"].items():
        for way in ("decorator", "inline", "helper"):
            p50, mean = result["p50_us"][way], result["mean_us"][way]
            print(f"{case:<12} {way:<22} {p50:>8.2f} {mean:>8.2f}")
        for ratio in ("decorator/inline", "decorator/helper"):
            p50, mean = result["ratio_p50"][ratio], result["ratio_mean"][ratio]
            print(f"{case:<12} {ratio:<22} {p50:>8.3f} {mean:>8.3f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
