"""Requests per second and latency of the HTTP service, with the cache and without it.

``python -m bench http`` (:func:`run_http`): the real service (``ogcache serve``, started as
``bench/resilience.py`` starts it, with its helpers) on a fresh, migrated PostgreSQL
database with the demo data, in three configurations running side by side:

- ``no-cache``: ``OGCACHE_REDIS_URL`` is a closed loopback port, as the resilience bench's
  uncached path: the breaker stays open and every read goes to the database (through the
  cache's single-flight, which lets concurrent reads of one key share one query; the
  ``loads`` column shows how many queries ran);
- ``redis``: a redis-server of the run's own, the service's default settings (menu, tokens
  and profiles have the in-process tier in front of Redis, and its hits are answered before
  the router: ``src/ogcache/api/hot_reads.py``);
- ``redis-no-l1``: the same with ``OGCACHE_LOCAL_TTL_MENU``, ``_AUTH`` and ``_PROFILE`` at 0:
  every read a Redis round trip, through the routes;
- ``ceiling``: what FastAPI under the same uvicorn settings does at best, for comparison
  (``bench/ceiling.py``): the very same response bytes (captured from the service, with the
  same token, once it runs) answered from memory after checking that a bearer header is
  present, served by the same ``ogcache.api.server.run`` (workers, protocol, log settings).

Each worker count of ``workers`` (default 1 and 2) is a run of its own: every configuration's
server started with that many uvicorn workers, measured, stopped.

Load comes from ``wrk`` (another process; ``apt-get install wrk``), over loopback, with
``connections`` keep-alive connections on one thread, on ``GET /api/profiles/{id}``,
``GET /api/menu`` and ``GET /api/auth/me`` (the last two of which carry a demo user's bearer
token). For each of ``rounds`` rounds, for each endpoint, each configuration in turn (the
order alternates between rounds) gets ``warmup`` seconds of load, not measured, then
``duration`` seconds measured. Reported per endpoint and configuration: the median over the
rounds of requests/s, p50 and p99 (wrk's), the cache's counters (``/metrics``) over the
measured runs, and the ratios to the ceiling's and to ``no-cache``'s figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.ceiling import CannedRoute, CeilingServer, save_routes
from bench.resilience import USER, AppServer, _issue_token, prepared_database
from support.servers import RedisProcess, free_port

__all__ = ["HttpConfig", "format_report", "run_http", "seed_comparison"]

CONFIGURATIONS = ("ceiling", "no-cache", "redis", "redis-no-l1")
CEILING = "ceiling"  # bench/ceiling.py: the service's bytes from memory, same uvicorn settings
ENDPOINTS = ("profile", "menu", "me")
WRK_INSTALL = "wrk is not installed: apt-get install wrk (Debian/Ubuntu)"

# The seed's table (REDIS_IMPLEMENTATION_SUMMARY): operation -> (before ms, after ms).
SEED_TABLE: dict[str, tuple[float, float]] = {
    "Auth check": (150.0, 5.0),
    "User profile": (100.0, 3.0),
    "Conversations": (80.0, 2.0),
    "Menu data": (200.0, 3.0),
    "Average API request": (300.0, 10.0),
}
# Our operations for each row: (workload bench op, HTTP endpoint).
_OURS: dict[str, tuple[str, str | None]] = {
    "Auth check": ("auth", "me"),
    "User profile": ("profile", "profile"),
    "Conversations": ("conversation", None),
    "Menu data": ("menu", "menu"),
    "Average API request": ("read request", None),
}


@dataclass(frozen=True, slots=True)
class HttpConfig:
    duration: float = 5.0  # seconds measured, per endpoint, configuration and round
    warmup: float = 1.0
    rounds: int = 3
    connections: int = 4
    threads: int = 1
    configurations: tuple[str, ...] = CONFIGURATIONS
    endpoints: tuple[str, ...] = ENDPOINTS
    workers: tuple[int, ...] = (1, 2)  # uvicorn worker processes, each count a run of its own


@dataclass(frozen=True, slots=True)
class WrkRun:
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


@dataclass
class EndpointResult:
    endpoint: str
    configuration: str
    runs: list[WrkRun]
    counters: dict[str, float]  # /metrics, summed over namespaces, over the measured runs
    workers: int = 1
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    failed: int = 0

    def __post_init__(self) -> None:
        self.requests_per_s = round(statistics.median(r.requests_per_s for r in self.runs), 1)
        self.p50_ms = round(statistics.median(r.p50_ms for r in self.runs), 3)
        self.p99_ms = round(statistics.median(r.p99_ms for r in self.runs), 3)
        self.failed = sum(r.non_2xx + r.socket_errors for r in self.runs)


@dataclass
class HttpResult:
    config: dict[str, Any]
    results: list[EndpointResult]
    seconds: float
    checks: dict[str, bool] = field(default_factory=dict)

    def get(self, endpoint: str, configuration: str, workers: int = 1) -> EndpointResult | None:
        return next(
            (
                r
                for r in self.results
                if r.endpoint == endpoint
                and r.configuration == configuration
                and r.workers == workers
            ),
            None,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- wrk --------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _duration_ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def parse_wrk(output: str) -> WrkRun:
    """The figures of ``wrk --latency``'s report."""
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    total = re.search(r"^\s+(\d+) requests in ([\d.]+)(us|ms|s|m)", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if total is None or rate is None or set(percentiles) != {"50", "99"}:
        raise RuntimeError(f"could not read wrk's report:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkRun(
        requests=int(total.group(1)),
        seconds=_duration_ms(total.group(2) + total.group(3)) / 1000,
        requests_per_s=float(rate.group(1)),
        p50_ms=_duration_ms(percentiles["50"]),
        p99_ms=_duration_ms(percentiles["99"]),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


async def run_wrk(url: str, headers: dict[str, str], seconds: float, config: HttpConfig) -> WrkRun:
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError(WRK_INSTALL)
    arguments = [
        binary,
        f"-t{config.threads}",
        f"-c{config.connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        *(part for name, value in headers.items() for part in ("-H", f"{name}: {value}")),
        url,
    ]
    process = await asyncio.create_subprocess_exec(
        *arguments, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{output.decode()}")
    return parse_wrk(output.decode())


# --- the run ----------------------------------------------------------------------------------

_COUNTERS = ("hits", "local_hits", "misses", "loads", "coalesced", "short_circuited")


async def scrape(base_url: str) -> dict[str, float]:
    """The cache's counters in ``/metrics``, summed over the namespaces."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as http:
        text = (await http.get("/metrics")).text
    totals = dict.fromkeys(_COUNTERS, 0.0)
    for line in text.splitlines():
        for name in _COUNTERS:
            if line.startswith(f"ogcache_cache_{name}_total{{"):
                totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def _settings(configuration: str, database_url: str, redis_url: str, secret: str) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "jwt_secret": secret,
        "cache_prefix": f"http-{uuid.uuid4().hex[:10]}",
        "auto_migrate": False,  # migrated once by prepared_database
        "seed_demo_data": False,
        "refresh_interval": 0,
        "log_level": "WARNING",
    }
    if configuration == "redis-no-l1":
        settings.update(local_ttl_menu=0, local_ttl_auth=0, local_ttl_profile=0)
    return settings


def _paths(token: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Each endpoint's path and the headers wrk sends it (a demo user's bearer token)."""
    auth = {"Authorization": f"Bearer {token}"}
    return {
        "profile": (f"/api/profiles/{USER}", auth),
        "menu": ("/api/menu", {}),
        "me": ("/api/auth/me", auth),
    }


async def capture(base_url: str, token: str) -> list[CannedRoute]:
    """Every endpoint's response from the running service, with the token wrk sends; whether
    the route needs the token: it answers 401 without it."""
    routes = []
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
        for path, headers in _paths(token).values():
            response = await http.get(path, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code} to the capture")
            bare = await http.get(path)
            routes.append(
                CannedRoute.captured(
                    path,
                    response.status_code,
                    response.content,
                    list(response.headers.multi_items()),
                    bool(headers) and bare.status_code == 401,
                )
            )
    return routes


async def run_http(
    config: HttpConfig,
    *,
    database_url: str,
    progress: Callable[[str], None] | None = None,
) -> HttpResult:
    """Start the services, load them with wrk, collect the figures; nothing is asserted."""
    if shutil.which("wrk") is None:
        raise RuntimeError(WRK_INSTALL)
    say = progress or (lambda _message: None)
    began = time.monotonic()
    secret = secrets.token_urlsafe(48)
    results: list[EndpointResult] = []
    with tempfile.TemporaryDirectory(prefix="ogcache-http-") as tmp:
        workdir = Path(tmp)
        redis = await asyncio.to_thread(RedisProcess(free_port(), workdir).start)
        try:
            async with prepared_database(database_url) as db:
                token = await _issue_token(db, secret)
                closed = f"redis://127.0.0.1:{free_port()}/0"
                for workers in config.workers:
                    say(f"{workers} worker(s)")
                    settings = {
                        c: _settings(c, db, closed if c == "no-cache" else redis.url, secret)
                        for c in config.configurations
                    }
                    run = _WorkersRun(config, workers, settings, workdir / f"w{workers}", token)
                    results += await run.measure(say)
        finally:
            await asyncio.to_thread(redis.stop)
    result = HttpResult(
        config=asdict(config), results=results, seconds=round(time.monotonic() - began, 1)
    )
    result.checks = {"no_failed_requests": all(r.failed == 0 for r in results)}
    return result


@dataclass
class _WorkersRun:
    """One worker count: every configuration's server started side by side (the ceiling once
    the service's responses are captured), measured, stopped."""

    config: HttpConfig
    workers: int
    settings: dict[str, dict[str, Any]]  # per configuration (the ceiling's: any service's)
    directory: Path
    token: str

    async def measure(self, say: Callable[[str], None]) -> list[EndpointResult]:
        self.directory.mkdir()
        servers: dict[str, AppServer] = {}
        try:
            for configuration, settings in self.settings.items():
                if configuration != CEILING:
                    log = self.directory / f"{configuration}.log"
                    server = AppServer(settings, log, self.workers)
                    servers[configuration] = server
                    await server.start()
            if CEILING in self.settings:
                servers[CEILING] = await self._ceiling(servers)
            return await _measure(self.config, servers, self.token, say, self.workers)
        finally:
            for server in servers.values():
                await asyncio.to_thread(server.stop)

    async def _ceiling(self, services: dict[str, AppServer]) -> AppServer:
        if not services:
            raise RuntimeError("the ceiling needs a service to capture its responses from")
        source = services.get("redis") or next(iter(services.values()))
        routes_file = self.directory / "ceiling-routes.json"
        routes = await capture(source.base_url, self.token)
        save_routes(routes, routes_file)
        settings = next(s for c, s in self.settings.items() if c != CEILING)
        server = CeilingServer(settings, routes_file, self.directory / "ceiling.log", self.workers)
        await server.start()
        served = await capture(server.base_url, self.token)
        if [r.comparable() for r in served] != [r.comparable() for r in routes]:
            await asyncio.to_thread(server.stop)
            raise RuntimeError(f"the ceiling answers otherwise than the service: {served}")
        return server


async def _measure(
    config: HttpConfig,
    servers: dict[str, AppServer],
    token: str,
    say: Callable[[str], None],
    workers: int = 1,
) -> list[EndpointResult]:
    paths = _paths(token)
    runs: dict[tuple[str, str], list[WrkRun]] = {}
    counters: dict[tuple[str, str], dict[str, float]] = {}
    for round_index in range(config.rounds):
        order = list(config.configurations)
        if round_index % 2:
            order.reverse()
        for endpoint in config.endpoints:
            path, headers = paths[endpoint]
            say(f"workers {workers}, round {round_index + 1}/{config.rounds}: {endpoint}")
            for configuration in order:
                server = servers[configuration]
                url = server.base_url + path
                if config.warmup > 0:
                    await run_wrk(url, headers, config.warmup, config)
                before = await _scrape(server, configuration)
                run = await run_wrk(url, headers, config.duration, config)
                after = await _scrape(server, configuration)
                key = (endpoint, configuration)
                runs.setdefault(key, []).append(run)
                total = counters.setdefault(key, dict.fromkeys(_COUNTERS, 0.0))
                for name in _COUNTERS:
                    total[name] += after[name] - before[name]
    return [
        EndpointResult(endpoint, configuration, runs[(endpoint, configuration)],
                       counters[(endpoint, configuration)], workers)
        for endpoint in config.endpoints
        for configuration in config.configurations
    ]  # fmt: skip


async def _scrape(server: AppServer, configuration: str) -> dict[str, float]:
    """The service's counters; the ceiling has no cache (and no /metrics): zeros."""
    if configuration == CEILING:
        return dict.fromkeys(_COUNTERS, 0.0)
    return await scrape(server.base_url)


# --- report -------------------------------------------------------------------------------------


def _ratio(value: float | None, reference: float | None) -> str:
    return "-" if not value or not reference else f"{value / reference:.2f}x"


def format_report(result: HttpResult) -> str:
    config = result.config
    lines = [
        f"wrk -t{config['threads']} -c{config['connections']}, {config['rounds']} rounds x "
        f"{config['duration']:g} s per endpoint and configuration (after {config['warmup']:g} s "
        f"of warm-up each), for each of {', '.join(map(str, config['workers']))} uvicorn "
        f"worker(s); medians over the rounds; latencies in ms. Counters from /metrics over the "
        f"measured runs, per request. ceiling: FastAPI under the same uvicorn settings "
        f"answering the service's bytes from memory (bench/ceiling.py); 'of ceiling': this "
        f"req/s / the ceiling's, and the ceiling's p99 / this p99.",
    ]
    header = (
        f"{'w':>1} {'endpoint':<8} {'configuration':<13} {'req/s':>8} {'p50':>7} {'p99':>7} "
        f"{'failed':>6} {'hits':>5} {'L1':>5} {'loads':>5} | {'req/s of ceiling':>16} "
        f"{'p99 of ceiling':>14} | {'req/s vs no cache':>17} {'p99 no cache/this':>17}"
    )
    lines += [header, "-" * len(header)]
    lines += [_report_line(result, r) for r in result.results]
    if len(config["workers"]) > 1:
        lines += ["", *_workers_table(result)]
    return "\n".join(lines)


def _report_line(result: HttpResult, r: EndpointResult) -> str:
    base = result.get(r.endpoint, "no-cache", r.workers)
    top = result.get(r.endpoint, CEILING, r.workers)
    served = sum(run.requests for run in r.runs) or 1
    c = r.counters
    counters = (
        f"{'-':>5} {'-':>5} {'-':>5}"
        if r.configuration == CEILING
        else f"{c['hits'] / served:>5.2f} {c['local_hits'] / served:>5.2f} "
        f"{c['loads'] / served:>5.2f}"
    )
    return (
        f"{r.workers:>1} {r.endpoint:<8} {r.configuration:<13} {r.requests_per_s:>8.0f} "
        f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.failed:>6} {counters} | "
        f"{_ratio(r.requests_per_s, top.requests_per_s if top else None):>16} "
        f"{_ratio(top.p99_ms if top else None, r.p99_ms):>14} | "
        f"{_ratio(r.requests_per_s, base.requests_per_s if base else None):>17} "
        f"{_ratio(base.p99_ms if base else None, r.p99_ms):>17}"
    )


def _workers_table(result: HttpResult) -> list[str]:
    """Each endpoint and configuration's req/s and p99 at every worker count, and the ratio
    of the req/s at the most workers to the req/s at the fewest."""
    counts = sorted(result.config["workers"])
    low, high = counts[0], counts[-1]
    header = (
        f"{'endpoint':<8} {'configuration':<13} "
        + " ".join(f"{f'req/s {n}w':>9} {f'p99 {n}w':>8}" for n in counts)
        + f" | {f'req/s {high}w/{low}w':>12}"
    )
    lines = [header, "-" * len(header)]
    for r in (r for r in result.results if r.workers == low):
        found = [result.get(r.endpoint, r.configuration, n) for n in counts]
        cells = " ".join(
            f"{f.requests_per_s:>9.0f} {f.p99_ms:>8.2f}" if f else f"{'-':>9} {'-':>8}"
            for f in found
        )
        last = found[-1]
        ratio = _ratio(last.requests_per_s if last else None, r.requests_per_s)
        lines.append(f"{r.endpoint:<8} {r.configuration:<13} {cells} | {ratio:>12}")
    return lines


def seed_comparison(workload: dict[str, Any] | None, http: dict[str, Any] | None) -> str:
    """The seed's table next to ours: the workload bench's p50 per call without/with the
    cache (uncached/cached modes) and the HTTP bench's p50 per request (no cache/redis)."""

    def workload_p50(op: str, mode: str) -> float | None:
        if workload is None:
            return None
        summary = workload["ops"].get(mode, {}).get(op)
        return None if summary is None else summary["p50_ms"]

    def http_p50(endpoint: str | None, configuration: str) -> float | None:
        if http is None or endpoint is None:
            return None
        found = next(
            (
                r
                for r in http["results"]
                if r["endpoint"] == endpoint
                and r["configuration"] == configuration
                and r.get("workers", 1) == 1
            ),
            None,
        )
        return None if found is None else found["p50_ms"]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        "The seed's claims (REDIS_IMPLEMENTATION_SUMMARY, remote Supabase and Upstash) and ours "
        "(same machine, loopback). Milliseconds, before -> after (x = before/after).\n"
        "workload: p50 of one service call, uncached mode -> cached mode (python -m bench "
        "workload); HTTP: p50 of one request under wrk, no cache -> redis (python -m bench http)."
    ]
    header = (
        f"{'operation':<19} | {'seed':>7} {'':>2}{'':>5} {'x':>5} | "
        f"{'workload':>8} {'':>2}{'':>6} {'x':>5} | {'HTTP':>6} {'':>2}{'':>6} {'x':>5}"
    )
    lines += [header, "-" * len(header)]
    for operation, (before, after) in SEED_TABLE.items():
        op, endpoint = _OURS[operation]
        wb, wa = workload_p50(op, "uncached"), workload_p50(op, "cached")
        hb, ha = http_p50(endpoint, "no-cache"), http_p50(endpoint, "redis")
        lines.append(
            f"{operation:<19} | {before:>7.0f} ->{after:>5.0f} {before / after:>4.0f}x | "
            f"{ms(wb):>8} ->{ms(wa):>6} {_ratio(wb, wa):>5} | "
            f"{ms(hb):>6} ->{ms(ha):>6} {_ratio(hb, ha):>5}"
        )
    return "\n".join(lines)


# --- command ------------------------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    defaults = HttpConfig()
    parser = commands.add_parser(
        "http", help="requests/s and p99 of the HTTP service under wrk, with the cache and without"
    )
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds")
    parser.add_argument("--warmup", type=float, default=defaults.warmup, help="seconds")
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument(
        "--configurations",
        default=",".join(defaults.configurations),
        help=f"comma-separated, of: {', '.join(CONFIGURATIONS)}",
    )
    parser.add_argument(
        "--workers",
        default=",".join(map(str, defaults.workers)),
        help="comma-separated uvicorn worker counts, each measured (default: 1,2)",
    )
    parser.add_argument("--output", default=None, help="default bench/results/http.json")


def command(args: Any, database_url: str, results: Path) -> int:
    if shutil.which("wrk") is None:
        print(WRK_INSTALL)
        return 2
    configurations = tuple(c.strip() for c in args.configurations.split(",") if c.strip())
    unknown = set(configurations) - set(CONFIGURATIONS)
    if unknown or not configurations:
        print(f"unknown configuration {unknown}: choose from {', '.join(CONFIGURATIONS)}")
        return 2
    if configurations == (CEILING,):
        print("the ceiling's responses are captured from a service: add a configuration")
        return 2
    try:
        workers = tuple(int(n) for n in args.workers.split(",") if n.strip())
    except ValueError:
        workers = ()
    if not workers or min(workers) < 1:
        print(f"--workers: comma-separated positive counts, not {args.workers!r}")
        return 2
    config = HttpConfig(
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        connections=args.connections,
        configurations=configurations,
        workers=workers,
    )
    from bench._support import machine

    load_before = os.getloadavg()
    result = asyncio.run(
        run_http(config, database_url=database_url, progress=lambda m: print(m, flush=True))
    )
    print()
    print(format_report(result))
    workload = None
    with contextlib.suppress(OSError, ValueError):
        workload = json.loads((results / "workload.json").read_text())
    print()
    print(seed_comparison(workload, result.as_dict()))
    print()
    for check, passed in result.checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench http " + " ".join(sys.argv[2:]),
        "machine": machine(load_before),
        **result.as_dict(),
    }
    output = Path(args.output) if args.output else results / "http.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {output} ({result.seconds} s)")
    return 0 if all(result.checks.values()) else 1
