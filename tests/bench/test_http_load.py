"""The HTTP bench's parts that need no server (reading wrk's report, the seed comparison, the
ceiling's app, the report's ratios), and a tiny run of the ceiling beside the service."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from bench.ceiling import CannedRoute, create_app, load_routes, save_routes
from bench.http_load import (
    SEED_TABLE,
    EndpointResult,
    HttpConfig,
    HttpResult,
    WrkRun,
    format_report,
    parse_wrk,
    run_http,
    seed_comparison,
)

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:40000/api/menu
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.05ms  610.00us  12.31ms   90.12%
    Req/Sec     1.97k    95.31     2.10k    78.00%
  Latency Distribution
     50%    1.96ms
     75%    2.20ms
     90%    2.61ms
     99%    5.28ms
  9803 requests in 5.00s, 41.12MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   1960.45
Transfer/sec:      8.22MB
"""


def test_parse_wrk_reads_rate_percentiles_and_failures() -> None:
    run = parse_wrk(WRK_OUTPUT)
    assert run.requests == 9803
    assert run.seconds == pytest.approx(5.0)
    assert run.requests_per_s == pytest.approx(1960.45)
    assert run.p50_ms == pytest.approx(1.96)
    assert run.p99_ms == pytest.approx(5.28)
    assert run.non_2xx == 3
    assert run.socket_errors == 0


def test_parse_wrk_refuses_a_report_it_cannot_read() -> None:
    with pytest.raises(RuntimeError, match="could not read"):
        parse_wrk("connection refused")


def test_seed_comparison_lists_every_row_of_the_seed_even_without_our_figures() -> None:
    table = seed_comparison(None, None)
    for operation in SEED_TABLE:
        assert operation in table


# --- the ceiling ---------------------------------------------------------------------------------

ROUTES = [
    CannedRoute.captured(
        "/api/auth/me",
        200,
        b'{"user_id":"web_demo_alice"}',
        [("content-type", "application/json"), ("x-cache", "hit"), ("content-length", "28")],
        True,
    ),
    CannedRoute.captured("/api/menu", 200, b"[1,2]", [("content-type", "application/json")], False),
]


async def test_the_ceiling_answers_the_captured_bytes_behind_a_bearer_check(
    tmp_path: Path,
) -> None:
    save_routes(ROUTES, tmp_path / "routes.json")
    assert load_routes(tmp_path / "routes.json") == ROUTES
    app = create_app(load_routes(tmp_path / "routes.json"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ceiling") as http:
        me = await http.get("/api/auth/me", headers={"Authorization": "Bearer anything"})
        assert (me.status_code, me.content) == (200, b'{"user_id":"web_demo_alice"}')
        assert me.headers["x-cache"] == "hit"
        assert me.headers["content-type"] == "application/json"
        assert (await http.get("/api/auth/me")).status_code == 401
        bare = await http.get("/api/auth/me", headers={"Authorization": "Bearer "})
        assert bare.status_code == 401
        menu = await http.get("/api/menu")
        assert (menu.status_code, menu.content) == (200, b"[1,2]")


def _run(rate: float, p99: float) -> WrkRun:
    return WrkRun(int(rate), 1.0, rate, p99 / 2, p99, 0, 0)


def test_the_report_gives_each_route_as_a_ratio_of_the_ceiling_and_2_workers_against_1() -> None:
    zeros = dict.fromkeys(("hits", "local_hits", "misses", "loads", "coalesced",
                           "short_circuited"), 0.0)  # fmt: skip
    results = [
        EndpointResult("menu", configuration, [_run(rate * workers, 4.0 / workers)], zeros, workers)
        for workers in (1, 2)
        for configuration, rate in (("ceiling", 1000.0), ("no-cache", 100.0), ("redis", 500.0))
    ]
    config = asdict(HttpConfig(endpoints=("menu",), workers=(1, 2)))
    report = format_report(HttpResult(config=config, results=results, seconds=1.0))
    redis_line = next(line for line in report.splitlines() if line.startswith("1 menu     redis"))
    assert "0.50x" in redis_line  # of the ceiling's req/s
    assert "5.00x" in redis_line  # vs no cache
    assert "req/s 2w/1w" in report
    assert "2.00x" in report.splitlines()[-1]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
async def test_a_tiny_run_measures_the_ceiling_beside_the_service(postgres_url: str) -> None:
    config = HttpConfig(
        duration=1,
        warmup=0,
        rounds=1,
        endpoints=("me",),
        configurations=("ceiling", "redis"),
        workers=(1,),
    )
    result = await run_http(config, database_url=postgres_url)

    ceiling, service = result.get("me", "ceiling"), result.get("me", "redis")
    assert ceiling is not None
    assert service is not None
    assert (ceiling.failed, service.failed) == (0, 0), result.as_dict()
    assert ceiling.runs[0].requests > 0
    assert service.runs[0].requests > 0
    assert service.counters["hits"] > 0
    assert "ceiling" in format_report(result)
