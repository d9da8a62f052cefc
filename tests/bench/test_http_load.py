"""The HTTP bench's parts that need no server: reading wrk's report, the seed comparison."""

from __future__ import annotations

import pytest

from bench.http_load import SEED_TABLE, parse_wrk, seed_comparison

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
