"""The peer comparison (``python -m bench peers``) in a tiny configuration: it runs every
contender against the test Redis and reports every row, ratio and check."""

from __future__ import annotations

import dataclasses

import pytest

from bench.peers import CONTENDERS, PeersConfig, checks, peers_table, run_peers

TINY = PeersConfig(
    rounds=1,
    ops=30,
    keys=10,
    duration=0.05,
    concurrency=4,
    batch_size=10,
    batch_ops=3,
    stampede_readers=20,
    stampede_rounds=1,
    loader_delay=0.01,
    pool=8,
)


# aiocache 0.12 stores with redis-py's deprecated SETEX and cashews 7.6 closes with its
# deprecated close(): their warnings are not ours to fix.
@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
async def test_peers_bench_reports_every_contender_and_check(redis_url: str) -> None:
    report = await run_peers(dataclasses.replace(TINY, redis_url=redis_url))

    assert list(report["rows"]) == list(CONTENDERS)
    for name, row in report["rows"].items():
        assert row["hit_p50_us"] > 0, name
        assert row["hit_p99_us"] >= row["hit_p50_us"], name
        assert row["ops_c1"] > 0, name
        assert row["ops_cn"] > 0, name
        assert row["batch_p50_ms"] > 0, name
        if name == "raw GET":
            assert row["cold_loads"] is None
        else:
            assert row["cold_p99_ms"] > 0, name
    # ogcache loads a cold key once in one process; the peers are reported, not judged here
    for name in ("ogcache L2", "ogcache L1"):
        assert report["rows"][name]["cold_loads"] == [1], name
        assert report["rows"][name]["cold_errors"] == [0], name
    for name in ("cashews", "cashews L1", "aiocache"):
        assert 1 <= report["rows"][name]["cold_loads"][0] <= TINY.stampede_readers, name
    # without protection, every reader whose GET came before the first SET loads
    assert report["rows"]["hand-written"]["cold_loads"][0] > 1
    assert report["rows"]["raw GET"]["x_raw_p50"] == 1.0
    assert report["local_tier"]["ogcache L1"]["active"] is True
    assert report["payload_bytes"] == 1024
    assert report["keys_removed"] > 0

    assert report["checks"] == checks(report["rows"])
    assert len(report["checks"]) == 10
    assert all(check["passed"] in (True, False) for check in report["checks"])
    assert "ogcache L1" in peers_table(report)
