"""``python -m bench concurrency``: the stampede bench and the consistency checker, ogcache
against the naive get/load/set pattern; prints a table and saves JSON.

Servers: ``OGCACHE_BENCH_DATABASE_URL`` (any database on the PostgreSQL server to use; the
checker creates and drops a database of its own there) and ``OGCACHE_BENCH_REDIS_URL``;
defaults ``postgresql://postgres@127.0.0.1:5432/postgres`` and ``redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench._support import database_url, redis_url
from bench.consistency import CheckerResult, Mode, run_checker
from bench.stampede import StampedeResult, StampedeSeries, run_stampede, summarize

MODES: tuple[Mode, ...] = ("ogcache", "naive")
RESULTS = Path(__file__).resolve().parent / "results"


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _stampede_table(series: list[StampedeSeries]) -> str:
    header = (
        f"{'mode':<8} {'procs':>5} {'cold':>5} {'loads':<10} {'waiters':>7} "
        f"{'wait p50':>8} {'wait p99':>8} {'p99 worst':>9} {'all p99':>8} {'spread':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in series:
        low, high = min(r.loads), max(r.loads)
        loads = f"{low} x{len(r.loads)}" if low == high else f"{low}-{high}"
        lines.append(
            f"{r.mode:<8} {r.processes:>5} {'yes' if r.cold else 'no':>5} {loads:<10} "
            f"{r.waiters:>7} {_ms(r.waiter_p50_ms):>8} {_ms(r.waiter_p99_ms):>8} "
            f"{_ms(r.waiter_p99_worst_ms):>9} {_ms(r.all_p99_ms):>8} "
            f"{r.start_spread_max_ms:>6.1f}"
        )
    return "\n".join(lines)


def _checker_table(results: list[CheckerResult]) -> str:
    header = (
        f"{'mode':<8} {'reads':>8} {'writes':>6} {'stale reads':>11} {'stale keys':>10} "
        f"{'loads':>6} {'rejected':>8} {'errors':>6} {'seconds':>7} {'reads/s':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        rejected = "-" if r.sets_rejected is None else str(r.sets_rejected)
        lines.append(
            f"{r.mode:<8} {r.reads:>8} {r.writes:>6} {r.stale_reads:>11} {r.stale_keys:>10} "
            f"{r.loads:>6} {rejected:>8} {r.backend_errors:>6} {r.duration_s:>7.1f} "
            f"{r.reads_per_second:>8.0f}"
        )
    return "\n".join(lines)


def _verdict(stampedes: list[StampedeResult], checks: list[CheckerResult]) -> dict[str, bool]:
    """Every run counts: one run with two loads fails the verdict, whatever the others did."""
    ours = [r for r in stampedes if r.mode == "ogcache" and r.cold]
    checked = [r for r in checks if r.mode == "ogcache"]
    return {
        "stampede_one_process_exactly_one_load": all(
            r.loads == 1 for r in ours if r.processes == 1
        ),
        "stampede_many_processes_at_most_one_load": all(
            r.loads <= 1 for r in ours if r.processes > 1
        ),
        "stampede_values_right": all(r.wrong_values == 0 for r in stampedes),
        "no_stale_reads": all(r.stale_reads == 0 for r in checked),
        "no_stale_keys": all(r.stale_keys == 0 for r in checked),
        "checker_reads_at_least_100000": all(r.reads >= 100_000 for r in checked),
    }


def concurrency(args: argparse.Namespace) -> int:
    db, redis = database_url(), redis_url()
    print(f"PostgreSQL {_redact(db)}, Redis {_redact(redis)}, {os.cpu_count()} CPUs", flush=True)
    began = time.monotonic()

    stampedes: list[StampedeResult] = []
    series: list[StampedeSeries] = []
    runs: list[tuple[Mode, bool]] = [("ogcache", True), ("naive", True), ("ogcache", False)]
    for processes in (1, 4):
        for mode, cold in runs:
            what = "cold key" if cold else "all hits (baseline)"
            print(
                f"stampede: {mode}, {processes} process(es), {what}, x{args.repeat} ...",
                flush=True,
            )
            results = [
                run_stampede(
                    mode,
                    redis_url=redis,
                    processes=processes,
                    readers=args.stampede_readers,
                    loader_delay=args.loader_delay_ms / 1000,
                    cold=cold,
                )
                for _ in range(args.repeat)
            ]
            stampedes.extend(results)
            series.append(summarize(results))

    checks: list[CheckerResult] = []
    sizes: dict[Mode, int] = {"ogcache": args.reads, "naive": args.naive_reads or args.reads}
    for mode, reads in sizes.items():
        print(f"consistency checker: {mode}, {reads} reads ...", flush=True)
        checks.append(
            run_checker(
                mode,
                database_url=db,
                redis_url=redis,
                processes=args.processes,
                readers_per_process=args.readers,
                writers_per_process=args.writers,
                keys=args.keys,
                reads_target=reads,
                seed=args.seed,
                loader_delay_max=args.loader_delay_max_ms / 1000,
                write_fraction=args.write_fraction,
            )
        )

    verdict = _verdict(stampedes, checks)
    print()
    print(
        f"Stampede: {args.stampede_readers} concurrent reads of one key, "
        f"{args.loader_delay_ms:g} ms loader, {args.repeat} runs each.\nloads: per run (the "
        "same in every run, or the range); latencies in ms, median over the runs ('p99 "
        "worst': the slowest run's); waiters: readers that did not run the loader; spread: "
        "how far apart the processes began"
    )
    print(_stampede_table(series))
    print()
    c = checks[0]
    print(
        f"Consistency: {c.processes} processes x ({c.readers_per_process} readers + "
        f"{c.writers_per_process} writers), {c.keys} keys, {c.write_fraction:.0%} writes, "
        f"loader sleeps 0-{c.loader_delay_max_ms:g} ms"
    )
    print(_checker_table(checks))
    for r in checks:
        if r.examples:
            print(f"\nfirst stale observation ({r.mode}): {json.dumps(r.examples[0])}")
    print()
    for check, passed in verdict.items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")

    report: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench concurrency " + " ".join(sys.argv[2:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "servers": {"database": _redact(db), "redis": _redact(redis)},
        "duration_s": round(time.monotonic() - began, 1),
        "verdict": verdict,
        "stampede": [r.as_dict() for r in series],
        "stampede_runs": [r.as_dict() for r in stampedes],
        "consistency": [r.as_dict() for r in checks],
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {output} ({report['duration_s']} s)")
    return 0 if all(verdict.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "concurrency", help="stampede bench and consistency checker, ogcache vs naive"
    )
    run.add_argument("--reads", type=int, default=100_000, help="checker reads (ogcache)")
    run.add_argument(
        "--naive-reads", type=int, default=None, help="checker reads (naive; default: --reads)"
    )
    run.add_argument("--processes", type=int, default=2, help="checker processes")
    run.add_argument("--readers", type=int, default=16, help="reader tasks per process")
    run.add_argument("--writers", type=int, default=2, help="writer tasks per process")
    run.add_argument("--keys", type=int, default=20)
    run.add_argument("--write-fraction", type=float, default=0.03)
    run.add_argument("--loader-delay-max-ms", type=float, default=2.0)
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--stampede-readers", type=int, default=1000)
    run.add_argument("--repeat", type=int, default=5, help="runs of each stampede case")
    run.add_argument("--loader-delay-ms", type=float, default=50.0, help="stampede loader")
    run.add_argument("--output", default=str(RESULTS / "concurrency.json"))
    args = parser.parse_args(argv)
    if args.command == "concurrency":
        return concurrency(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
