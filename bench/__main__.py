"""``python -m bench concurrency``: the stampede bench and the consistency checker, ogcache
against the naive get/load/set pattern; prints a table and saves JSON.

``python -m bench resilience``: Redis killed, hung, slow and sluggish under a steady load of
cached reads through the HTTP service, against the uncached path; prints a table and saves
JSON. ``--repeat N`` runs every scenario N times (``--workers 2 --repeat 10 hang slow``:
stale reads across processes, per run).

``python -m bench suite``: the performance suite of the issue "Fast", one after the other:
``peers`` (ogcache against raw redis-py, hand-written cache-aside, cashews, aiocache; table,
JSON, PNG), ``invalidation`` (L1 invalidation delay across two processes), ``workload`` (Zipf
users through the services on PostgreSQL) and ``http`` (wrk against the service), then one
summary of their checks. ``python -m bench profile``: pyinstrument over raw, L2 and L1 hits.
``python -m bench http-profile``: py-spy on the service under wrk, where each cached route's
time goes (``--source DIR``: the ogcache of another worktree).

``python -m bench changes``: writes made in PostgreSQL by raw SQL reaching the cache of
``ogcache serve --workers 2`` (commit-to-visible lag, change capture on and off), and the
capture triggers' cost per statement; prints a table and saves JSON.

Servers: ``OGCACHE_BENCH_DATABASE_URL`` (any database on the PostgreSQL server to use; the
checker creates and drops a database of its own there) and ``OGCACHE_BENCH_REDIS_URL``;
defaults ``postgresql://postgres@127.0.0.1:5432/postgres`` and ``redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import changes, http_load, http_profile, peers, workload
from bench import profile as hit_profile
from bench._support import database_url, machine, redis_url
from bench.consistency import CheckerResult, Mode, run_checker
from bench.invalidation import add_parser as add_invalidation_parser
from bench.invalidation import command as invalidation
from bench.resilience import (
    KINDS,
    FaultKind,
    ResilienceConfig,
    ScenarioResult,
    prepared_database,
    run_baseline,
    run_fault_scenario,
)
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
        "machine": machine(),
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


def _resilience_table(results: list[ScenarioResult]) -> str:
    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    header = (
        f"{'fault':<8} {'requests':>8} {'failed':>6} {'p99 warm':>8} {'p99 fault':>9} "
        f"{'p99 open':>8} {'p99 uncached':>12} {'ratio':>5} {'(open)':>6} {'open s':>12} "
        f"{'closed s':>12} {'reads s':>7} {'hits>90% s':>10} {'pending':>7} "
        f"{'reads after':>11} {'stale':>5}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        uncached = r.uncached.latency.p99_ms if r.uncached else None
        lines.append(
            f"{r.kind:<8} {r.requests:>8} {r.failed:>6} {_ms(r.warm.p99_ms):>8} "
            f"{_ms(r.fault.p99_ms):>9} {_ms(r.fault_after_open.p99_ms):>8} "
            f"{_ms(uncached):>12} {s(r.p99_ratio):>5} {s(r.p99_ratio_after_open):>6} "
            f"{s(r.breaker_open_s) + ' (' + s(r.breaker_open_logged_s) + ')':>12} "
            f"{s(r.breaker_closed_s) + ' (' + s(r.breaker_closed_logged_s) + ')':>12} "
            f"{s(r.reads_resumed_s):>7} {s(r.hit_rate_recovered_s):>10} "
            f"{r.pending_invalidations_max:>7.0f} {r.profile_reads_after_write:>11} "
            f"{r.stale_reads:>5}"
        )
    return "\n".join(lines)


async def _resilience_runs(
    config: ResilienceConfig, kinds: list[FaultKind], repeat: int, abandoned: list[str]
) -> list[ScenarioResult]:
    def say(message: str) -> None:
        print(message, flush=True)

    results = []
    with tempfile.TemporaryDirectory(prefix="ogcache-resilience-") as tmp:
        workdir = Path(tmp)
        async with prepared_database(database_url()) as db:
            for kind in [kind for _ in range(repeat) for kind in kinds]:
                # The uncached path measured just before each scenario: the machine may be
                # shared, and a comparison is fairer between neighbouring moments.
                uncached = None
                if config.baseline_s > 0:
                    say(
                        f"{kind}: uncached path, {config.warm_s:g} s warm-up, "
                        f"{config.baseline_s:g} s measured"
                    )
                    uncached = await run_baseline(database_url=db, workdir=workdir, config=config)
                try:
                    result = await run_fault_scenario(
                        kind,
                        database_url=db,
                        workdir=workdir,
                        config=config,
                        uncached=uncached,
                        progress=say,
                    )
                except RuntimeError as exc:  # the service did not start: not a result
                    say(f"{kind}: run abandoned: {str(exc).splitlines()[0]}")
                    abandoned.append(kind)
                    continue
                results.append(result)
    return results


def resilience(args: argparse.Namespace) -> int:
    config = ResilienceConfig(
        clients=args.clients,
        workers=args.workers,
        rate=args.rate or None,
        warm_s=args.warm,
        fault_s=args.fault,
        write_after_s=min(args.write_after, args.fault / 2),
        recovery_max_s=args.recovery_max,
        baseline_s=args.baseline,
        cache_timeout=args.cache_timeout,
        cache_connect_timeout=args.cache_timeout,
        cool_down=args.cool_down,
        slow_call_threshold=args.slow_call_threshold,
        stall_threshold=args.stall_threshold,
        recovery_settle=args.recovery_settle,
        slow_delay=args.slow_delay,
        sluggish_delay=args.sluggish_delay,
        sluggish_timeout=args.sluggish_timeout,
    )
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        print(f"unknown fault {', '.join(sorted(unknown))}: choose from {', '.join(KINDS)}")
        return 2
    kinds = [kind for kind in KINDS if not args.kinds or kind in args.kinds]
    db = database_url()
    print(
        f"PostgreSQL {_redact(db)} (a database of its own), own redis-server processes, "
        f"{os.cpu_count()} CPUs; service workers: {config.workers}; {config.clients} clients at "
        f"{f'{config.rate:g} req/s' if config.rate else 'full speed'}",
        flush=True,
    )
    began = time.monotonic()
    load_before = os.getloadavg()
    abandoned: list[str] = []
    results = asyncio.run(_resilience_runs(config, kinds, args.repeat, abandoned))
    verdict: dict[str, bool] = {}
    for r in results:  # with --repeat, a check passes only if it passed in every run
        for check, passed in r.checks.items():
            verdict[f"{r.kind}:{check}"] = verdict.get(f"{r.kind}:{check}", True) and passed

    print()
    print(
        f"Cache timeout {config.cache_timeout:g} s, cool-down {config.cool_down:g} s, "
        f"threshold {config.failure_threshold}, slow call {config.slow_call_threshold:g} s, "
        f"stall {config.stall_threshold:g} s; slow = replies delayed {config.slow_delay:g} s; "
        f"sluggish = replies delayed {config.sluggish_delay:g} s with a cache timeout of "
        f"{config.sluggish_timeout:g} s. Latencies in ms.\n'p99 fault': requests in flight at "
        f"any moment of the "
        f"{config.fault_s:g} s fault; 'p99 open': those begun once the breaker was seen open; "
        f"'p99 uncached': the same load with Redis unreachable from the start, measured "
        f"for {config.baseline_s:g} s just before; ratio = p99 fault / p99 uncached, (open) = "
        f"p99 open / p99 uncached.\n"
        f"open s: fault -> breaker seen open in /metrics "
        f"(the service's log line); closed s: recovery -> breaker seen closed or settling (log); "
        f"reads s: recovery -> seen done settling; hits>90% s: "
        f"recovery -> hit rate over the last second above 90%; pending: invalidations "
        f"remembered; reads after / stale: profile reads begun after the write made during the "
        f"fault, and those that returned the old value"
    )
    print(_resilience_table(results))
    if args.repeat > 1:
        for kind in kinds:
            stale = [r.stale_reads for r in results if r.kind == kind]
            print(f"stale reads per run ({kind}): {stale}")
    if abandoned:
        print(f"runs abandoned (the service did not start): {abandoned}")
        verdict["every_run_completed"] = False
    for r in results:
        if r.failure_examples:
            print(f"\nfirst failed requests ({r.kind}): {r.failure_examples}")
        if r.stale_examples:
            print(f"\nfirst stale reads ({r.kind}): {r.stale_examples}")
    print()
    for check, passed in verdict.items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")

    report: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench resilience " + " ".join(sys.argv[2:]),
        "machine": machine(load_before),
        "servers": {"database": _redact(db), "redis": "own redis-server per scenario"},
        "config": dataclasses.asdict(config),
        "repeat": args.repeat,
        "abandoned_runs": abandoned,
        "stale_reads_per_run": {
            kind: [r.stale_reads for r in results if r.kind == kind] for kind in kinds
        },
        "duration_s": round(time.monotonic() - began, 1),
        "verdict": verdict,
        "scenarios": [r.as_dict() for r in results],
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {output} ({report['duration_s']} s)")
    return 0 if all(verdict.values()) else 1


SUITE = ("peers", "invalidation", "workload", "http")


def suite() -> int:
    """Each bench of the suite with its defaults, one after the other (never two at once:
    they would measure each other), then which of them met every check."""
    outcomes: dict[str, int] = {}
    for name in SUITE:
        print(f"\n=== python -m bench {name} ===", flush=True)
        started = time.monotonic()
        outcomes[name] = main([name])
        print(f"=== {name}: exit {outcomes[name]} after {time.monotonic() - started:.0f} s")
    print("\nsuite summary (each bench's checks are in its own table and JSON):")
    for name, code in outcomes.items():
        print(f"  {name:<13} {'every check met' if code == 0 else 'a check missed (see above)'}")
    return 0 if not any(outcomes.values()) else 1


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

    defaults = ResilienceConfig()
    res = commands.add_parser(
        "resilience",
        help="Redis killed, hung and slow under load through the HTTP service",
    )
    res.add_argument(
        "kinds",
        nargs="*",
        metavar="FAULT",
        help="kill, hang, slow and/or sluggish (default: all four)",
    )
    res.add_argument("--clients", type=int, default=defaults.clients)
    res.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help="service worker processes (above 1, /metrics shows one worker's breaker at a time)",
    )
    res.add_argument(
        "--rate", type=float, default=defaults.rate, help="req/s of all clients (0: full speed)"
    )
    res.add_argument("--warm", type=float, default=defaults.warm_s, help="seconds")
    res.add_argument("--fault", type=float, default=defaults.fault_s, help="seconds")
    res.add_argument(
        "--write-after", type=float, default=defaults.write_after_s, help="seconds into fault"
    )
    res.add_argument("--recovery-max", type=float, default=defaults.recovery_max_s)
    res.add_argument(
        "--baseline",
        type=float,
        default=defaults.baseline_s,
        help="uncached path, seconds (0: not measured, no p99 ratio)",
    )
    res.add_argument("--repeat", type=int, default=1, help="runs of each scenario")
    res.add_argument("--cache-timeout", type=float, default=defaults.cache_timeout)
    res.add_argument("--cool-down", type=float, default=defaults.cool_down)
    res.add_argument("--slow-call-threshold", type=float, default=defaults.slow_call_threshold)
    res.add_argument("--stall-threshold", type=float, default=defaults.stall_threshold)
    res.add_argument(
        "--recovery-settle", type=float, default=None, help="seconds (default: 2 cool-downs)"
    )
    res.add_argument("--slow-delay", type=float, default=defaults.slow_delay)
    res.add_argument("--sluggish-delay", type=float, default=defaults.sluggish_delay)
    res.add_argument(
        "--sluggish-timeout",
        type=float,
        default=defaults.sluggish_timeout,
        help="the cache timeout of the sluggish scenario",
    )
    res.add_argument("--output", default=str(RESULTS / "resilience.json"))
    workload.add_parser(commands)
    http_load.add_parser(commands)
    http_profile.add_parser(commands)
    peers.add_parser(commands)
    add_invalidation_parser(commands)
    changes.add_parser(commands)
    commands.add_parser("profile", help="pyinstrument over raw GET, L2 and L1 hits")
    commands.add_parser(
        "suite", help="peers, invalidation, workload and http in one run, with a summary"
    )
    args = parser.parse_args(argv)
    if args.command == "concurrency":
        return concurrency(args)
    if args.command == "resilience":
        return resilience(args)
    if args.command == "workload":
        return workload.command(args, database_url(), RESULTS)
    if args.command == "http":
        return http_load.command(args, database_url(), RESULTS)
    if args.command == "http-profile":
        return http_profile.command(args, database_url(), RESULTS)
    if args.command == "changes":
        return changes.command(args, database_url(), RESULTS)
    if args.command == "peers":
        return peers.command(args, sys.argv[2:])
    if args.command == "invalidation":
        return invalidation(args)
    if args.command == "profile":
        for report in asyncio.run(hit_profile.run()):
            print(report)
        return 0
    if args.command == "suite":
        return suite()
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
