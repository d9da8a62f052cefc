"""Redis killed, hung or slow under a steady load of cached reads through the HTTP service.

One scenario (:func:`run_fault_scenario`):

- a redis-server of its own on a free loopback port (for ``slow``, behind a latency proxy in
  a process of its own), and the real service (``ogcache serve``: uvicorn with ``workers``
  processes, 1 by default, the app's own lifespan) on a fresh, migrated PostgreSQL database
  with the demo data;
- ``clients`` concurrent HTTP clients in this process (``httpx.AsyncClient``, keep-alive),
  paced to ``rate`` requests per second in all, that loop over ``GET /api/profiles/{id}``,
  ``GET /api/menu`` and ``GET /api/auth/me`` with a demo user's token, recording every
  request (start, end, status);
- a monitor scraping ``/metrics`` (circuit state, hits and misses of every namespace,
  pending invalidations) every ``poll_interval`` seconds (with several workers each scrape
  reaches one of them, so the breaker and hit-rate figures are not meaningful then), and a
  watch on this process's own event loop, whose lags would inflate measured latencies;
- phases: *warm* (every read a hit), *fault* (``kill``: SIGKILL; ``hang``: SIGSTOP;
  ``slow``: every reply delayed by ``slow_delay``, above the cache timeout; ``sluggish``:
  every reply delayed by ``sluggish_delay``, below the cache timeout, which is
  ``sluggish_timeout`` for this scenario: Redis answers every call, late), *recovery*
  (``kill``: a new redis-server on the same port, empty; ``hang``: SIGCONT; ``slow`` and
  ``sluggish``: no delay), until the breaker is closed, reads are back (after the settle
  time) and so is the hit rate, plus a tail, at most ``recovery_max_s``;
- during the fault, once the breaker is open, a write through the API (``PATCH`` of the
  profile's preferences with a new marker): its invalidation cannot be delivered. Every
  profile read that starts after the write returned must show the new marker. For ``hang``,
  ``slow`` and ``sluggish`` Redis comes back with the old entry (checked present when the
  fault began), so this checks the replay of undelivered invalidations (with ``workers`` > 1,
  across processes: see ``docs/resilience.md``); for ``kill`` the restarted Redis is empty.

The uncached path (:func:`run_baseline`) is the same service and load with ``REDIS_URL``
pointing at a closed loopback port: every cache call fails, the breaker stays open, every
request is served from the database. ``python -m bench resilience`` runs it and the three
scenarios and compares.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import httpx
from redis.asyncio import Redis

from bench._support import create_database, drop_database, quantile, unique_name
from ogcache.config import Settings, load_settings
from ogcache.db.seed import seed_demo_data
from ogcache.runtime import Runtime
from ogcache.services import AppNamespaces
from support.latency_proxy import LatencyProxy
from support.servers import RedisProcess, free_port

FaultKind = Literal["kill", "hang", "slow", "sluggish"]
KINDS: tuple[FaultKind, ...] = ("kill", "hang", "slow", "sluggish")
_DELAYED: tuple[FaultKind, ...] = ("slow", "sluggish")  # behind the latency proxy
_SKIPPING = ("suspect", "open", "half_open")  # breaker states in which reads skip Redis

USER = "web_demo_alice"  # a demo user of the seed (ogcache.db.demo_data)
MARKER = "resilience_marker"  # the preferences key the write changes

# The issue's bounds.
MAX_OPEN_S = 1.0
MAX_RECOVERY_S = 10.0
MIN_HIT_RATE = 0.9
MAX_P99_RATIO = 2.0

STALL = 0.02  # a loop of the measuring process this late is recorded


@dataclass(frozen=True, slots=True)
class ResilienceConfig:
    """Load, phases and the service's cache settings (chosen explicitly, not defaults)."""

    clients: int = 8
    workers: int = 1  # of the service (ogcache serve --workers)
    rate: float | None = 100.0  # requests per second of all clients (None: back to back)
    warm_s: float = 2.0
    fault_s: float = 3.0
    write_after_s: float = 1.0  # the write, this long after the fault began
    recovery_max_s: float = 10.0
    tail_s: float = 2.0  # load kept on after the breaker closed and the hit rate came back
    baseline_s: float = 5.0
    poll_interval: float = 0.05
    cache_timeout: float = 0.15
    cache_connect_timeout: float = 0.15
    cache_pool_timeout: float = 0.5
    cool_down: float = 1.0
    failure_threshold: int = 5
    slow_call_threshold: float = 0.1
    stall_threshold: float = 0.02
    recovery_settle: float | None = None  # None: the service's default, two cool-downs
    slow_delay: float = 0.3
    sluggish_delay: float = 0.2
    sluggish_timeout: float = 0.5
    request_timeout: float = 10.0

    def service_settings(self, kind: FaultKind | None = None) -> dict[str, Any]:
        timeout = self.sluggish_timeout if kind == "sluggish" else self.cache_timeout
        settings: dict[str, Any] = {
            "cache_timeout": timeout,
            "cache_connect_timeout": timeout if kind == "sluggish" else self.cache_connect_timeout,
            "cache_pool_timeout": self.cache_pool_timeout,
            "cache_cool_down": self.cool_down,
            "cache_failure_threshold": self.failure_threshold,
            "cache_slow_call_threshold": self.slow_call_threshold,
            "cache_stall_threshold": self.stall_threshold,
        }
        if self.recovery_settle is not None:
            settings["cache_recovery_settle"] = self.recovery_settle
        return settings


# --- the database -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def prepared_database(server_url: str) -> AsyncIterator[str]:
    """A fresh database on the PostgreSQL server of ``server_url``, migrated, with the demo
    data; dropped afterwards. Yields its URL."""
    name = unique_name("resilience")
    url = await create_database(server_url, name)
    try:
        async with Runtime.open(_local_settings(url)) as runtime:
            await runtime.migrate()
            await seed_demo_data(runtime.db)
        yield url
    finally:
        await drop_database(server_url, name)


def _local_settings(database_url: str, jwt_secret: str | None = None) -> Settings:
    """Settings of this process's own runtime (migrations, tokens): no Redis."""
    return load_settings(
        _env_file=None,
        database_url=database_url,
        redis_url=None,
        jwt_secret=jwt_secret or secrets.token_urlsafe(48),
        log_level="WARNING",
    )


async def _issue_token(database_url: str, jwt_secret: str) -> str:
    async with Runtime.open(_local_settings(database_url, jwt_secret)) as runtime:
        return (await runtime.auth.issue_token(USER)).access_token


# --- the service in a process of its own ---------------------------------------------------


class AppServer:
    """``ogcache serve`` on a free loopback port, configured only by the given settings."""

    def __init__(self, settings: dict[str, Any], log_path: Path, workers: int = 1) -> None:
        self.settings = settings
        self.workers = workers
        self.port = free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        """The command line of the server process."""
        return [
            sys.executable, "-c", "from ogcache.cli import main; main()",
            "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", str(self.workers),
        ]  # fmt: skip

    def spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OGCACHE_", "UPSTASH_"))}
        for name, value in self.settings.items():
            env[f"OGCACHE_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(  # noqa: S603 - a fixed argument list
            self.argv(),
            env=env,
            cwd=self.log_path.parent,  # no stray .env
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )  # fmt: skip

    async def start(self) -> None:
        """Spawn the service and wait (at most 60 s: a busy machine) until it answers."""
        self.spawn()
        deadline = time.monotonic() + 60.0
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as http:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"the service exited with {self._process.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/api/menu")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service did not start:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_events(self) -> list[tuple[float, str]]:
        """(epoch seconds, "suspected" | "opened" | "closed") of every breaker transition the
        service logged. Requests skip Redis from a suspicion on (the probe confirms later)."""
        events = []
        pattern = re.compile(
            r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "
            r".*cache (?:circuit|backend) (suspected|opened|closed)"
        )
        for line in self.log_path.read_text(errors="replace").splitlines():
            found = pattern.match(line)
            if found:
                stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                events.append((stamp, found.group(2)))
        return events


def _service_settings(
    config: ResilienceConfig,
    database_url: str,
    redis_url: str,
    jwt_secret: str,
    kind: FaultKind | None = None,
) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "redis_url": redis_url,
        "jwt_secret": jwt_secret,
        "cache_prefix": f"resilience-{uuid.uuid4().hex[:10]}",
        "auto_migrate": False,  # migrated once by prepared_database
        "seed_demo_data": False,
        "refresh_interval": 0,  # warm the critical caches once, at start-up
        "log_level": "INFO",  # the breaker: suspicions at info, opened and closed at warning
        **config.service_settings(kind),
    }


# --- load and monitoring -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One request; times in seconds since the load began."""

    route: str
    start: float
    end: float
    status: int  # 0: transport error
    marker: str | None = None  # the profile's marker, for profile reads
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status != 200


@dataclass(frozen=True, slots=True)
class Sample:
    """One scrape of ``/metrics``; ``at`` in seconds since the load began (answer received)."""

    at: float
    state: str
    hits: float
    misses: float
    pending: float


def parse_metrics(text: str, at: float) -> Sample:
    state, hits, misses, pending = "?", 0.0, 0.0, 0.0
    for line in text.splitlines():
        if line.startswith("ogcache_cache_hits_total{"):
            hits += float(line.rsplit(" ", 1)[1])
        elif line.startswith("ogcache_cache_misses_total{"):
            misses += float(line.rsplit(" ", 1)[1])
        elif line.startswith("ogcache_cache_circuit_state{"):
            name, value = line.rsplit(" ", 1)
            if float(value) == 1.0:
                state = name.split('"')[1]
        elif line.startswith("ogcache_cache_pending_invalidations "):
            pending = float(line.rsplit(" ", 1)[1])
    return Sample(at, state, hits, misses, pending)


class Load:
    """Closed-loop clients over the cached read routes, and the ``/metrics`` monitor."""

    def __init__(self, base_url: str, token: str, config: ResilienceConfig) -> None:
        self.config = config
        auth = {"Authorization": f"Bearer {token}"}
        self.routes: list[tuple[str, str, dict[str, str]]] = [
            ("profile", f"/api/profiles/{USER}", auth),
            ("menu", "/api/menu", {}),
            ("me", "/api/auth/me", auth),
        ]
        limits = httpx.Limits(max_connections=config.clients + 2)
        self.http = httpx.AsyncClient(
            base_url=base_url, timeout=config.request_timeout, limits=limits
        )
        self.monitor_http = httpx.AsyncClient(base_url=base_url, timeout=config.request_timeout)
        self.auth = auth
        self.requests: list[Request] = []
        self.samples: list[Sample] = []
        self.monitor_errors: list[str] = []
        self.stalls: list[tuple[float, float]] = []  # (at, seconds) this process's loop lagged
        self.t0 = time.perf_counter()
        self.wall0 = time.time()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    def now(self) -> float:
        return time.perf_counter() - self.t0

    async def _client(self, index: int) -> None:
        step = index
        interval = self.config.clients / self.config.rate if self.config.rate else 0.0
        # Spread the clients' slots over one interval; a late request starts the next at once.
        slot = self.now() + interval * index / self.config.clients
        while not self._stopping:
            if interval:
                await asyncio.sleep(max(0.0, slot - self.now()))
                slot = max(slot + interval, self.now())
            route, path, headers = self.routes[step % len(self.routes)]
            step += 1
            start = self.now()
            status, marker, error = 0, None, None
            try:
                response = await self.http.get(path, headers=headers)
                status = response.status_code
                if route == "profile" and status == 200:
                    marker = response.json()["preferences"].get(MARKER)
                elif status != 200:
                    error = response.text[:200]
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.requests.append(Request(route, start, self.now(), status, marker, error))

    async def _monitor(self) -> None:
        while not self._stopping:
            sent = self.now()
            try:
                response = await self.monitor_http.get("/metrics")
                self.samples.append(parse_metrics(response.text, self.now()))
            except httpx.HTTPError as exc:
                self.monitor_errors.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(max(0.0, self.config.poll_interval - (self.now() - sent)))

    async def _watch_loop(self) -> None:
        """Record when this process's event loop was late (latencies measured here would
        include the delay): a measurement artefact, not the service's."""
        while not self._stopping:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            late = time.perf_counter() - before - 0.005
            if late > STALL:
                self.stalls.append((self.now(), late))

    async def write_marker(self, value: str) -> tuple[float, float, int]:
        """PATCH the profile's marker; (start, end, status)."""
        start = self.now()
        try:
            response = await self.http.patch(
                f"/api/profiles/{USER}", json={"preferences": {MARKER: value}}, headers=self.auth
            )
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        return start, self.now(), status

    def begin(self) -> None:
        # What this process imported (the ORM, the app) need not be scanned by every full
        # collection during the run: fewer and shorter pauses in the measuring process.
        # Before the clock starts: on a busy machine the collection alone can take a second,
        # which would leave the first phase without a single request.
        gc.collect()
        gc.freeze()
        self.t0 = time.perf_counter()
        self.wall0 = time.time()
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.config.clients)]
        self._tasks.append(asyncio.create_task(self._monitor()))
        self._tasks.append(asyncio.create_task(self._watch_loop()))

    async def end(self) -> None:
        """Stop the clients and the monitor (again: nothing more happens)."""
        self._stopping = True
        if self._tasks:
            await asyncio.gather(*self._tasks)
            self._tasks = []
            gc.unfreeze()
        await self.http.aclose()
        await self.monitor_http.aclose()


def _window_hit_rate(samples: list[Sample], index: int, window: float = 1.0) -> float | None:
    """Hit rate over the ``window`` seconds before ``samples[index]`` (None: no lookups)."""
    last = samples[index]
    first = None
    for earlier in reversed(samples[:index]):
        if earlier.at <= last.at - window:
            first = earlier
            break
    if first is None:
        return None
    hits, misses = last.hits - first.hits, last.misses - first.misses
    return hits / (hits + misses) if hits + misses > 0 else None


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhaseLatency:
    requests: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    per_second: float

    @classmethod
    def of(cls, requests: list[Request], seconds: float) -> PhaseLatency:
        ordered = sorted(r.end - r.start for r in requests)

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 2)

        return cls(
            requests=len(ordered),
            failed=sum(r.failed for r in requests),
            p50_ms=ms(quantile(ordered, 0.5)),
            p99_ms=ms(quantile(ordered, 0.99)),
            max_ms=ms(ordered[-1] if ordered else None),
            per_second=round(len(ordered) / seconds, 1) if seconds > 0 else 0.0,
        )


@dataclass(frozen=True, slots=True)
class BaselineResult:
    """The uncached path: the same load with the cache unreachable from the start."""

    clients: int
    rate: float | None
    seconds: float
    latency: PhaseLatency
    breaker_states: list[str]  # seen while measuring: never "closed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ScenarioResult:
    kind: FaultKind
    config: dict[str, Any]
    requests: int
    failed: int
    failure_examples: list[str]
    warm: PhaseLatency
    fault: PhaseLatency  # requests in flight at any moment of the fault
    fault_before_open: PhaseLatency  # of those, the ones begun before the breaker was seen open
    fault_after_open: PhaseLatency  # and the ones begun once it was
    recovery: PhaseLatency
    uncached: BaselineResult | None  # the uncached path, if measured for comparison
    p99_ratio: float | None  # fault p99 / uncached p99
    p99_ratio_after_open: float | None  # fault_after_open p99 / uncached p99
    slow_in_fault: int | None  # fault requests slower than 2 x the uncached p99
    slowest_in_fault: list[str]  # the five slowest, begun at (seconds after the fault)
    breaker_open_s: float | None  # fault -> first scrape showing it not closed
    breaker_open_logged_s: float | None  # fault -> its log line "suspected" or "opened"
    breaker_closed_s: float | None  # recovery -> first scrape showing it closed
    breaker_closed_logged_s: float | None
    reads_resumed_s: float | None  # recovery -> first scrape showing it closed, done settling
    hit_rate_recovered_s: float | None  # recovery -> 1 s window above 90 %
    hit_rate_warm: float | None  # the whole warm phase
    hit_rate_final: float | None  # the last second of the run
    old_entry_in_redis_at_fault: bool
    write_status: int
    write_at_s: float  # after the fault began (the write's end)
    pending_invalidations_max: float
    pending_invalidations_end: float
    profile_reads_after_write: int
    profile_reads_after_reads_resumed: int  # begun once reads went to Redis again
    stale_reads: int
    stale_examples: list[str]
    final_read_fresh: bool
    stale_entry_in_redis_end: bool
    monitor_errors: int
    client_stalls: int  # times this process's loop was over 20 ms late (see Load._watch_loop)
    client_stall_max_ms: float
    duration_s: float
    checks: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def evaluate(self) -> dict[str, bool]:
        self.checks = {
            "zero_failed_requests": self.failed == 0 and self.write_status == 200,
            "breaker_open_within_1s": self.breaker_open_s is not None
            and self.breaker_open_s <= MAX_OPEN_S,
            "breaker_closed_within_10s": self.breaker_closed_s is not None
            and self.breaker_closed_s <= MAX_RECOVERY_S,
            "hit_rate_above_90pct_within_10s": self.hit_rate_recovered_s is not None
            and self.hit_rate_recovered_s <= MAX_RECOVERY_S,
            "no_stale_value": self.stale_reads == 0
            and self.profile_reads_after_reads_resumed > 0
            and self.final_read_fresh
            and not self.stale_entry_in_redis_end,
        }
        if self.p99_ratio is not None:
            # The issue's bound, read strictly: every request in flight during the fault,
            # including those caught by the detection (each waits for up to two timeouts).
            self.checks["fault_p99_within_2x_uncached"] = self.p99_ratio <= MAX_P99_RATIO
        if self.p99_ratio_after_open is not None:
            # The same once the breaker is open: the outage's steady state.
            self.checks["fault_p99_after_open_within_2x_uncached"] = (
                self.p99_ratio_after_open <= MAX_P99_RATIO
            )
        return self.checks


# --- the runs ------------------------------------------------------------------------------


async def run_baseline(
    *, database_url: str, workdir: Path, config: ResilienceConfig | None = None
) -> BaselineResult:
    """The same load against the service whose Redis URL is a closed loopback port: every
    cache call fails, the breaker stays open, every request is served from the database.
    Measured for ``baseline_s`` after a warm-up of ``warm_s``."""
    config = config or ResilienceConfig()
    secret = secrets.token_urlsafe(48)
    token = await _issue_token(database_url, secret)
    closed = f"redis://127.0.0.1:{free_port()}/0"
    server = AppServer(
        _service_settings(config, database_url, closed, secret),
        workdir / "baseline.log",
        config.workers,
    )
    await server.start()
    load = Load(server.base_url, token, config)
    try:
        await _prime(load)
        load.begin()
        await _sleep_until(load, config.warm_s)
        measured_from = load.now()
        await _sleep_until(load, measured_from + config.baseline_s)
    finally:
        await load.end()
        await asyncio.to_thread(server.stop)
    measured = [r for r in load.requests if r.start >= measured_from]
    return BaselineResult(
        clients=config.clients,
        rate=config.rate,
        seconds=config.baseline_s,
        latency=PhaseLatency.of(measured, config.baseline_s),
        breaker_states=sorted({s.state for s in load.samples if s.at >= measured_from}),
    )


async def _prime(load: Load) -> None:
    """One request of each route, so the first measured ones find warm code and caches."""
    for _ in range(2):
        for _route, path, headers in load.routes:
            await load.http.get(path, headers=headers)


async def _raw_profile_entry(redis_url: str, key: str) -> bytes | None:
    client = Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        value = await client.get(key)
        return value if isinstance(value, bytes) else None
    finally:
        await client.aclose()


async def _sleep_until(load: Load, at: float) -> None:
    await asyncio.sleep(max(0.0, at - load.now()))


async def run_fault_scenario(
    kind: FaultKind,
    *,
    database_url: str,
    workdir: Path,
    config: ResilienceConfig | None = None,
    uncached: BaselineResult | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScenarioResult:
    """Run one fault scenario end to end (see the module's docstring); nothing is asserted."""
    config = config or ResilienceConfig()
    say = progress or (lambda _message: None)
    directory = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=workdir))
    redis = await asyncio.to_thread(RedisProcess(free_port(), directory).start)
    proxy: LatencyProxy | None = None
    server: AppServer | None = None
    load: Load | None = None
    try:
        cache_url = redis.url
        if kind in _DELAYED:
            proxy = await asyncio.to_thread(LatencyProxy(redis.port).start)
            cache_url = proxy.url
        secret = secrets.token_urlsafe(48)
        token = await _issue_token(database_url, secret)
        settings = _service_settings(config, database_url, cache_url, secret, kind)
        namespaces = AppNamespaces.from_settings(load_settings(_env_file=None, **settings))
        profile_key = f"{settings['cache_prefix']}:{namespaces.profile.stored_prefix}{USER}"
        server = AppServer(settings, directory / "service.log", config.workers)
        await server.start()
        load = Load(server.base_url, token, config)
        old, new = f"old-{uuid.uuid4().hex[:8]}", f"new-{uuid.uuid4().hex[:8]}"
        *_, status = await load.write_marker(old)
        if status != 200:
            raise RuntimeError(f"the first write answered {status}")
        await _prime(load)

        say(f"{kind}: warm {config.warm_s:g} s")
        load.begin()
        await _sleep_until(load, config.warm_s)
        raw = await _raw_profile_entry(redis.url, profile_key)
        old_in_redis = raw is not None and old.encode() in raw

        say(f"{kind}: fault {config.fault_s:g} s")
        fault_at = load.now()
        fault_wall = load.wall0 + fault_at
        if kind == "kill":
            await asyncio.to_thread(redis.stop)
        elif kind == "hang":
            redis.pause()
        else:
            assert proxy is not None
            delay = config.slow_delay if kind == "slow" else config.sluggish_delay
            await asyncio.to_thread(proxy.set_delay, delay)
        await _sleep_until(load, fault_at + config.write_after_s)
        write_start, write_end, write_status = await load.write_marker(new)
        await _sleep_until(load, fault_at + config.fault_s)

        say(f"{kind}: recovery (at most {config.recovery_max_s:g} s)")
        recover_at = load.now()
        recover_wall = load.wall0 + recover_at
        if kind == "kill":
            redis = await asyncio.to_thread(RedisProcess(redis.port, directory).start)
        elif kind == "hang":
            redis.resume()
        else:
            assert proxy is not None
            await asyncio.to_thread(proxy.set_delay, 0.0)
        closed_at = reads_at = recovered_at = None
        while load.now() < recover_at + config.recovery_max_s:
            await asyncio.sleep(config.poll_interval)
            closed_at, reads_at, recovered_at = _recovery_points(load.samples, recover_at)
            if (
                closed_at is not None
                and reads_at is not None
                and recovered_at is not None
                and load.now() >= max(closed_at, reads_at, recovered_at) + config.tail_s
            ):
                break
        await load.end()
        end = load.now()

        # After the run: the API, and the entry in Redis, hold the new value.
        response = await _final_read(server.base_url, load.auth)
        final_fresh = response == new
        raw = await _raw_profile_entry(redis.url, profile_key)
        stale_in_redis = raw is not None and new.encode() not in raw
        events = server.log_events()
    finally:
        if load is not None:
            await load.end()
        if server is not None:
            await asyncio.to_thread(server.stop)
        if proxy is not None:
            await asyncio.to_thread(proxy.stop)
        await asyncio.to_thread(redis.stop)
        shutil.rmtree(directory, ignore_errors=True)

    requests = load.requests
    warm = [r for r in requests if r.end < fault_at]
    fault = [r for r in requests if r.end >= fault_at and r.start < recover_at]
    recovery = [r for r in requests if r.start >= recover_at]
    opened_at = next(
        (s.at for s in load.samples if s.at >= fault_at and s.state in _SKIPPING), None
    )
    after_open = [r for r in fault if opened_at is not None and r.start >= opened_at]
    before_open = [r for r in fault if opened_at is None or r.start < opened_at]
    fault_latency = PhaseLatency.of(fault, recover_at - fault_at)
    after_open_latency = PhaseLatency.of(
        after_open, recover_at - (opened_at if opened_at is not None else fault_at)
    )
    profile_after_write = [r for r in requests if r.route == "profile" and r.start >= write_end]
    stale = [r for r in profile_after_write if r.status == 200 and r.marker != new]
    failed = [r for r in requests if r.failed]
    uncached_p99 = uncached.latency.p99_ms if uncached is not None else None
    open_logged = next(
        (t for t, e in events if e in ("suspected", "opened") and t >= fault_wall), None
    )
    close_logged = next((t for t, e in events if e == "closed" and t >= recover_wall), None)
    result = ScenarioResult(
        kind=kind,
        config=asdict(config),
        requests=len(requests),
        failed=len(failed),
        failure_examples=[f"{r.route} at {r.start:.3f}s: {r.status} {r.error}" for r in failed[:5]],
        warm=PhaseLatency.of(warm, fault_at),
        fault=fault_latency,
        fault_before_open=PhaseLatency.of(
            before_open, (opened_at if opened_at is not None else recover_at) - fault_at
        ),
        fault_after_open=after_open_latency,
        recovery=PhaseLatency.of(recovery, end - recover_at),
        uncached=uncached,
        p99_ratio=_ratio(fault_latency.p99_ms, uncached_p99),
        p99_ratio_after_open=_ratio(after_open_latency.p99_ms, uncached_p99),
        slowest_in_fault=[
            f"{r.route} +{r.start - fault_at:.3f}s {1000 * (r.end - r.start):.0f}ms"
            for r in sorted(fault, key=lambda r: r.start - r.end)[:5]
        ],
        slow_in_fault=(
            sum(r.end - r.start > 2 * uncached_p99 / 1000 for r in fault)
            if uncached_p99 is not None
            else None
        ),
        breaker_open_s=_rounded(opened_at - fault_at if opened_at is not None else None),
        breaker_open_logged_s=_rounded(open_logged - fault_wall if open_logged else None),
        breaker_closed_s=_rounded(closed_at - recover_at if closed_at is not None else None),
        breaker_closed_logged_s=_rounded(close_logged - recover_wall if close_logged else None),
        reads_resumed_s=_rounded(reads_at - recover_at if reads_at is not None else None),
        hit_rate_recovered_s=_rounded(
            recovered_at - recover_at if recovered_at is not None else None
        ),
        hit_rate_warm=_rounded(_hit_rate_between(load.samples, 0.0, fault_at)),
        hit_rate_final=_rounded(
            _window_hit_rate(load.samples, len(load.samples) - 1) if load.samples else None
        ),
        old_entry_in_redis_at_fault=old_in_redis,
        write_status=write_status,
        write_at_s=_rounded(write_end - fault_at) or 0.0,
        pending_invalidations_max=max(
            (s.pending for s in load.samples if s.at >= write_start), default=0.0
        ),
        pending_invalidations_end=load.samples[-1].pending if load.samples else -1.0,
        profile_reads_after_write=len(profile_after_write),
        profile_reads_after_reads_resumed=sum(
            r.start >= reads_at for r in profile_after_write if reads_at is not None
        ),
        stale_reads=len(stale),
        stale_examples=[f"read at {r.start:.3f}s saw {r.marker!r}" for r in stale[:5]],
        final_read_fresh=final_fresh,
        stale_entry_in_redis_end=stale_in_redis,
        monitor_errors=len(load.monitor_errors),
        client_stalls=len(load.stalls),
        client_stall_max_ms=round(max((lag for _, lag in load.stalls), default=0.0) * 1000, 1),
        duration_s=round(end, 2),
    )
    result.evaluate()
    return result


def _hit_rate_between(samples: list[Sample], start: float, end: float) -> float | None:
    inside = [s for s in samples if start <= s.at < end]
    if len(inside) < 2:
        return None
    hits, misses = inside[-1].hits - inside[0].hits, inside[-1].misses - inside[0].misses
    return hits / (hits + misses) if hits + misses > 0 else None


def _recovery_points(
    samples: list[Sample], recover_at: float
) -> tuple[float | None, float | None, float | None]:
    """After ``recover_at``: when the breaker was first seen closed (settling counts: calls
    go to Redis, only reads wait), when first seen done settling, and when the 1 s hit rate
    was first above 90 %."""
    closed_at = reads_at = recovered_at = None
    for index, sample in enumerate(samples):
        if sample.at < recover_at:
            continue
        if closed_at is None and sample.state in ("closed", "settling"):
            closed_at = sample.at
        if reads_at is None and sample.state == "closed":
            reads_at = sample.at
        if recovered_at is None:
            rate = _window_hit_rate(samples, index)
            if rate is not None and rate > MIN_HIT_RATE:
                recovered_at = sample.at
        if closed_at is not None and reads_at is not None and recovered_at is not None:
            break
    return closed_at, reads_at, recovered_at


async def _final_read(base_url: str, headers: dict[str, str]) -> str | None:
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
        response = await http.get(f"/api/profiles/{USER}", headers=headers)
        if response.status_code != 200:
            return None
        marker: str | None = response.json()["preferences"].get(MARKER)
        return marker


def _ratio(value: float | None, reference: float | None) -> float | None:
    return None if value is None or not reference else round(value / reference, 2)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
