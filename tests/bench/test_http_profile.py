"""The HTTP profile: reading py-spy's raw stacks and attributing them (no server), py-spy
missing, and a tiny run against the real service (skipped, with the reason, when wrk or py-spy
is missing or py-spy cannot attach)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import http_profile
from bench.http_profile import (
    CATEGORIES,
    EVENT_LOOP,
    ProfileConfig,
    ProfilerUnavailable,
    attribute,
    format_report,
    parse_raw,
    run_profile,
)

_ROOT = "thread (1): MainThread;<module> (<string>:1);Runner.run (asyncio/runners.py:118)"
RAW = "\n".join(
    [
        f"{_ROOT} 50",  # uvloop in C: idle
        f"{_ROOT};RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:524) 10",
        f"{_ROOT};HotReads._answer (ogcache/api/hot_reads.py:124) 5",
        f"{_ROOT};AbstractConnection.read_response (redis/asyncio/connection.py:9);"
        "StreamReader.read (asyncio/streams.py:3) 7",
        f"{_ROOT};Cache._local (ogcache/cache/cache.py:1);ModelCodec.loads "
        "(ogcache/cache/codec.py:75) 3",
        f"{_ROOT};verify (ogcache/services/auth.py:1);decode (jwt/api_jwt.py:2) 4",
        f"{_ROOT};Logger.info (logging/__init__.py:1) 1",
        f"{_ROOT};Handle._run (asyncio/events.py:80) 2",
        f"{_ROOT};_Rounds.run (ogcache/cache/backends/redis_tracking.py:1);"
        "send_command (redis/asyncio/connection.py:1) 3",
        "thread (2): asyncio_0;_worker (concurrent/futures/thread.py:81);"
        "SimpleQueue.get (queue.py:171) 20",
    ]
)


def test_parse_raw_reads_thread_frames_and_counts() -> None:
    stacks = parse_raw(RAW)
    assert len(stacks) == 10
    thread, frames, count = stacks[1]
    assert thread == "thread (1): MainThread"
    assert frames[-1] == ("RequestResponseCycle.send", "uvicorn/protocols/http/httptools_impl.py")
    assert count == 10


def test_attribution_leaves_idle_out_and_the_categories_sum_to_all_busy_samples() -> None:
    found = attribute(RAW)
    assert found.samples == 105
    assert found.idle == 70  # the loop in C, and the pool thread waiting
    assert found.busy == 35
    assert found.main_samples == 85
    assert sum(found.categories.values()) == found.busy
    assert set(found.categories) <= set(CATEGORIES)
    assert found.categories["uvicorn HTTP protocol and send"] == 10
    assert found.categories["our middleware"] == 5
    assert found.categories["Redis round trips"] == 7  # asyncio's leaf: its caller decides
    assert found.categories["decoding/validating"] == 3
    assert found.categories["token verification"] == 4
    assert found.categories["logging/access log"] == 1
    assert found.categories[EVENT_LOOP] == 2
    assert found.categories["read fence (tracking PING rounds, relay)"] == 3


def test_py_spy_missing_is_said_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(http_profile.sys, "executable", "/nonexistent/bin/python")
    with pytest.raises(ProfilerUnavailable, match="py-spy is not installed"):
        http_profile.py_spy_binary()


async def test_attaching_to_no_process_is_said_clearly(tmp_path: Path) -> None:
    try:
        http_profile.py_spy_binary()
    except ProfilerUnavailable as exc:
        pytest.skip(str(exc))
    with pytest.raises(ProfilerUnavailable, match="could not sample"):
        await http_profile.record(2**22 + 12345, 1, 100, tmp_path / "raw.txt")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
async def test_a_tiny_run_attributes_every_busy_sample(postgres_url: str, tmp_path: Path) -> None:
    config = ProfileConfig(duration=1, warmup=0.0, rate=200, routes=("menu",))
    try:
        profiles = await run_profile(config, database_url=postgres_url, raw_stem=tmp_path / "p")
    except ProfilerUnavailable as exc:  # not installed, or no ptrace here
        pytest.skip(f"py-spy cannot profile here: {exc}")
    (menu,) = profiles
    assert menu.runs[0].requests > 0
    assert menu.busy > 0
    assert (tmp_path / "p-menu.stacks").read_text().strip()
    assert sum(menu.share(name) for name in CATEGORIES) == pytest.approx(1.0)
    assert "total" in format_report(profiles)
