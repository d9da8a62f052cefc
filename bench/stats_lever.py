"""``python -m bench.stats_lever``: can anyone slow Redis down through ``GET /api/cache``?

The issue's scenario, side by side in one run: a Redis holding 120,000 of our keys, 100 calls
of ``GET /api/cache`` 20 at a time, while one user reads their profile (cached) in a loop.
Three phases: no statistics calls (the baseline), 100 anonymous calls (one shared
measurement), 100 calls with the admin token (each one measures afresh: what every anonymous
call cost before). For each: the profile read's median and p99, and the ``SCAN`` commands and
microseconds Redis spent on them (``INFO commandstats``). A redis-server of its own on a free
loopback port (so the counts are ours alone); a database of its own on
``OGCACHE_BENCH_DATABASE_URL``'s server. Prints a table and saves
``bench/results/stats-lever.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bench._support import (
    create_database,
    database_url,
    drop_database,
    machine,
    quantile,
    unique_name,
)
from ogcache.api.app import create_app
from ogcache.config import load_settings
from ogcache.db.seed import seed_demo_data
from ogcache.runtime import Runtime

KEYS = 120_000
CALLS = 100
PARALLEL = 20
ADMIN_TOKEN = secrets.token_hex(32)
RESULTS = Path(__file__).resolve().parent / "results" / "stats-lever.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603 (our own argv: the binary found on PATH)
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("redis-server did not start")


async def _scans(redis: aioredis.Redis) -> tuple[int, int]:
    stats = (await redis.info("commandstats")).get("cmdstat_scan", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


async def _phase(
    http: httpx.AsyncClient,
    redis: aioredis.Redis,
    reader: dict[str, str],
    user_id: str,
    stats_headers: dict[str, str] | None,
) -> dict[str, Any]:
    """The profile read's latency while ``CALLS`` statistics calls run (none: baseline)."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def read_profile() -> None:
        while not done.is_set() or len(latencies) < 50:
            start = time.perf_counter()
            response = await http.get(f"/api/profiles/{user_id}", headers=reader)
            latencies.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.text

    async def call_stats() -> None:
        if stats_headers is not None:
            for _ in range(CALLS // PARALLEL):
                await asyncio.gather(
                    *(http.get("/api/cache", headers=stats_headers) for _ in range(PARALLEL))
                )
        else:
            await asyncio.sleep(1.0)
        done.set()

    calls_before, usec_before = await _scans(redis)
    started = time.perf_counter()
    await asyncio.gather(read_profile(), call_stats())
    calls_after, usec_after = await _scans(redis)
    ordered = sorted(latencies)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "profile_reads": len(latencies),
        "profile_read_p50_ms": round(statistics.median(ordered), 2),
        "profile_read_p99_ms": round(quantile(ordered, 0.99) or 0, 2),
        "scan_calls": calls_after - calls_before,
        "scan_redis_ms": round((usec_after - usec_before) / 1000, 1),
    }


async def main() -> dict[str, Any]:
    server = database_url()
    name = unique_name("statslever")
    url = await create_database(server, name)
    directory = tempfile.mkdtemp(prefix="ogcache-stats-lever-")
    process, redis_url = _start_redis(directory)
    redis = aioredis.from_url(redis_url)
    try:
        settings = load_settings(
            _env_file=None,
            database_url=url,
            redis_url=redis_url,
            admin_token=ADMIN_TOKEN,
            jwt_secret=secrets.token_hex(32),
        )
        async with Runtime.open(settings) as runtime:
            await runtime.migrate()
            await seed_demo_data(runtime.db)
            user_id = "web_demo_alice"
            reader = {
                "Authorization": f"Bearer {(await runtime.auth.issue_token(user_id)).access_token}"
            }
            await redis.eval(
                "for i = 1, tonumber(ARGV[2]) do redis.call('SET', ARGV[1] .. i, 'x') end",
                0,
                f"{runtime.cache.prefix}:filler:",
                KEYS,
            )
            transport = httpx.ASGITransport(app=create_app(runtime=runtime))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                await http.get(f"/api/profiles/{user_id}", headers=reader)  # cache it
                # Anonymous first: the admin's fresh measurements would be reused by it.
                phases = {
                    "baseline (no stats calls)": None,
                    "anonymous (shared, OGCACHE_STATS_MAX_AGE)": {},
                    "admin token (a SCAN per call, as every call before)": {
                        "Authorization": f"Bearer {ADMIN_TOKEN}"
                    },
                }
                rows = {}
                for label, headers in phases.items():
                    rows[label] = await _phase(http, redis, reader, user_id, headers)
    finally:
        await redis.aclose()
        process.kill()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)
        await drop_database(server, name)
    return {"keys": KEYS, "calls": CALLS, "parallel": PARALLEL, "phases": rows}


if __name__ == "__main__":
    load_before = list(os.getloadavg())
    result = asyncio.run(main())
    result["machine"] = machine(load_before)
    print(
        f"{result['keys']:,} keys; {result['calls']} GET /api/cache, {result['parallel']} at a time"
    )
    print(f"{'phase':<55} {'p50 ms':>8} {'p99 ms':>8} {'SCANs':>7} {'SCAN ms':>8}")
    for label, row in result["phases"].items():
        print(
            f"{label:<55} {row['profile_read_p50_ms']:>8} {row['profile_read_p99_ms']:>8} "
            f"{row['scan_calls']:>7} {row['scan_redis_ms']:>8}"
        )
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS}")
