"""Writes made in the database reach the cache: commit-to-visible lag, and what it costs.

``python -m bench changes`` (:func:`run_changes`), once with change capture on
(``OGCACHE_CHANGE_CAPTURE=true``) and once off, each on a fresh, migrated PostgreSQL
database with the demo data:

- the real service (``ogcache serve --workers 2``, started by ``bench/resilience.py``'s
  :class:`~bench.resilience.AppServer`), Redis with a key prefix of the run's own (removed
  afterwards), admin token and JWT secret set, ``OGCACHE_VERIFY_SAMPLE`` set (a setting
  the service ignores where it has no verifier);
- ``clients`` HTTP clients in this process, paced to ``rate`` requests/s in all, looping over
  ``GET /api/menu``, ``GET /api/menu/context``, ``GET /api/profiles/{id}`` and
  ``GET /api/auth/me`` with users' tokens, so the entries are hot;
- a writer with connections of its own (asyncpg, not the application) that every
  ``interval`` seconds commits one of, in turn: a menu item's ``price_1g``, a profile's
  ``notes`` or ``telegram_username``, ``is_blocked = true`` for a user (unblocked once seen),
  ``revoked_at = now()`` for a session. Each write has a target of its own (an item, a user,
  a fresh session) until it is seen, so writes overlap but never share a target. After the
  COMMIT returns, the affected routes are polled every ``poll`` seconds (after the first
  ``10 * poll`` seconds, every tenth of the time elapsed, at most 0.1 s) until they have
  shown the new value (the token refused, for the last two) for ``confirm`` seconds without
  a break: the write's lag is the end of the first response of that run minus the end of
  the COMMIT. A write not seen after ``cap`` seconds is counted stale at the cap. (A read
  served from the database while the breaker suspects Redis shows the new value once, and
  the cached old one again after: the ``confirm`` window keeps such a glimpse from counting.)

Also reported: ``GET /api/cache``'s ``stats.changes`` and ``stats.verifier`` and the
``ogcache_change_*`` lines of ``/metrics`` (scraped several times: with 2 workers each answer
comes from one of them), and the ``cache.inconsistent`` lines of the servers' log. The cost of
the capture triggers on writes is measured by :mod:`bench.trigger_cost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
from redis.asyncio import Redis

from bench._support import Latency, asyncpg_dsn, machine, quantile, redis_url
from bench.resilience import AppServer, prepared_database
from bench.trigger_cost import STATES, CostConfig, capture_triggers, measure_trigger_cost
from ogcache.config import load_settings
from ogcache.runtime import Runtime

__all__ = [
    "KINDS",
    "ChangesConfig",
    "ModeResult",
    "add_parser",
    "command",
    "run_changes",
    "run_mode",
    "summarize",
]

Kind = Literal["menu", "profile", "block", "revoke"]
KINDS: tuple[Kind, ...] = ("menu", "profile", "block", "revoke")
INCONSISTENT = "cache.inconsistent"  # the verifier's log event
# ... whose text, in the service's plain log format (which does not print the event name):
INCONSISTENT_TEXT = "differs from the database"
REFUSED = (401, 403)
SCRAPES = 6  # GET /api/cache and /metrics at the end of a run: each reaches one worker
USER_PREFIX = "bench_changes"
MAX_P99_S = 1.0  # the issue's bound on commit-to-invalidated p99, on this machine
AIM_P99_S = 0.1  # and its aim


@dataclass(frozen=True, slots=True)
class ChangesConfig:
    duration: float = 20.0  # seconds of writes, per mode
    interval: float = 0.2  # seconds between writes
    cap: float = 5.0  # longest wait for a write to show
    poll: float = 0.005  # seconds between polls of an affected route
    confirm: float = 0.1  # a write counts as seen once shown this long without a break
    clients: int = 4
    rate: float = 200.0  # reader requests/s of all clients (0: back to back)
    warm: float = 2.0  # seconds of reads before the first write
    workers: int = 2
    targets: int = 8  # per kind: menu items, profiles, users to block, users whose session goes
    verify_sample: float = 0.05
    request_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Write:
    """One committed write; times in seconds since the writes began."""

    kind: str
    seq: int
    at: float  # the COMMIT returned
    commit_ms: float  # the statement with its commit, as the writer saw it
    lag_s: float | None  # COMMIT returned -> end of the first response showing it; None: stale
    routes: dict[str, float | None]  # the same per polled route
    polls: int
    regressions: int  # responses showing the old value again after one showed the new


@dataclass(slots=True)
class _Route:
    """One polled route of one write: since when it has shown the write without a break."""

    since: float | None = None  # seconds after the commit (end of the first such response)
    confirmed: bool = False  # shown for ``confirm`` seconds in a row
    regressions: int = 0

    def observe(self, shows: bool, at: float, confirm: float) -> None:
        if shows:
            if self.since is None:
                self.since = at
            self.confirmed = at - self.since >= confirm
        elif self.since is not None:
            self.regressions += 1
            self.since = None


# --- what a run needs: users, tokens, items --------------------------------------------------


@dataclass
class Fixture:
    """The run's targets and the means to make fresh sessions."""

    base_url: str
    admin_token: str
    runtime: Runtime  # this process's own (no Redis), for issuing tokens
    items: list[tuple[int, str]]  # menu items (id, name) shown by GET /api/menu
    users: dict[Kind, list[str]]  # per kind, the users it writes (none for menu)
    tokens: dict[str, str]  # user -> a token of theirs, for reads and checks

    async def fresh_token(self, user: str) -> tuple[str, uuid.UUID]:
        issued = await self.runtime.auth.issue_token(user)
        return issued.access_token, issued.session_id


@contextlib.asynccontextmanager
async def _fixture(database_url: str, secret: str, config: ChangesConfig) -> AsyncIterator[Fixture]:
    settings = load_settings(
        _env_file=None,
        database_url=database_url,
        redis_url=None,
        jwt_secret=secret,
        log_level="WARNING",
        change_capture=False,  # this process applies no changes, where the setting exists
    )
    async with Runtime.open(settings) as runtime:
        users: dict[Kind, list[str]] = {"menu": []}
        tokens: dict[str, str] = {}
        for kind in ("profile", "block", "revoke"):
            users[kind] = [f"{USER_PREFIX}_{kind}_{i}" for i in range(config.targets)]
            for user in users[kind]:
                await runtime.profiles.get_or_create(user_id=user)
                tokens[user] = (await runtime.auth.issue_token(user)).access_token
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            rows = await connection.fetch(
                "SELECT id, name FROM menu_items WHERE available AND NOT is_concentrate "
                "AND price_1g IS NOT NULL ORDER BY sort_order, name LIMIT $1",
                config.targets,
            )
        finally:
            await connection.close()
        items = [(int(row["id"]), str(row["name"])) for row in rows]
        yield Fixture("", "", runtime, items, users, tokens)


# --- readers ----------------------------------------------------------------------------------


class Readers:
    """Paced closed-loop clients over the cached read routes; every request recorded."""

    def __init__(self, http: httpx.AsyncClient, fixture: Fixture, config: ChangesConfig) -> None:
        self.http = http
        self.config = config
        self.routes: list[tuple[str, dict[str, str]]] = [
            ("/api/menu", {}),
            ("/api/menu/context", {}),
        ]
        for user in fixture.users["profile"]:
            auth = {"Authorization": f"Bearer {fixture.tokens[user]}"}
            self.routes += [(f"/api/profiles/{user}", auth), ("/api/auth/me", auth)]
        self.seconds: list[float] = []
        self.failures: list[str] = []
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def _client(self, index: int) -> None:
        clients = self.config.clients
        interval = clients / self.config.rate if self.config.rate else 0.0
        slot = time.perf_counter() + interval * index / clients
        for step in itertools.count(index):
            if self._stopping:
                return
            if interval:
                await asyncio.sleep(max(0.0, slot - time.perf_counter()))
                slot = max(slot + interval, time.perf_counter())
            path, headers = self.routes[step % len(self.routes)]
            start = time.perf_counter()
            try:
                response = await self.http.get(path, headers=headers)
                if response.status_code != 200:
                    self.failures.append(f"{path}: {response.status_code} {response.text[:120]}")
            except httpx.HTTPError as exc:
                self.failures.append(f"{path}: {type(exc).__name__}: {exc}")
            self.seconds.append(time.perf_counter() - start)

    def begin(self) -> None:
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.config.clients)]

    async def end(self) -> dict[str, Any]:
        self._stopping = True
        await asyncio.gather(*self._tasks)
        return {
            "requests": len(self.seconds),
            "failed": len(self.failures),
            "latency": asdict(Latency.of(self.seconds)),
            "failure_examples": self.failures[:5],
        }


# --- the writer -----------------------------------------------------------------------------

Probe = Callable[[], Awaitable[bool]]


class Writer:
    """Commits one write every ``interval`` through its own connections; times its arrival."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        http: httpx.AsyncClient,
        fixture: Fixture,
        config: ChangesConfig,
    ) -> None:
        self.pool = pool
        self.http = http
        self.fixture = fixture
        self.config = config
        self.free: dict[Kind, list[Any]] = {
            "menu": list(fixture.items),
            **{kind: list(fixture.users[kind]) for kind in KINDS if kind != "menu"},
        }
        self.writes: list[Write] = []
        self.skipped: dict[str, int] = dict.fromkeys(KINDS, 0)  # no free target at its turn
        self.errors: list[str] = []
        self.t0 = time.perf_counter()

    async def run(self) -> None:
        self.t0 = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        for seq in itertools.count():
            due = seq * self.config.interval
            if due >= self.config.duration:
                break
            await asyncio.sleep(max(0.0, self.t0 + due - time.perf_counter()))
            kind = KINDS[seq % len(KINDS)]
            if not self.free[kind]:
                self.skipped[kind] += 1
                continue
            tasks.append(asyncio.create_task(self._write(kind, seq, self.free[kind].pop(0))))
        await asyncio.gather(*tasks)

    async def _write(self, kind: Kind, seq: int, target: Any) -> None:
        try:
            if kind == "menu":
                await self._menu(seq, target)
            elif kind == "profile":
                await self._profile(seq, target)
            elif kind == "block":
                await self._block(seq, target)
            else:
                await self._revoke(seq, target)
        except (httpx.HTTPError, asyncpg.PostgresError, OSError, ValueError, KeyError) as exc:
            self.errors.append(f"{kind} #{seq}: {type(exc).__name__}: {exc}")
        finally:
            self.free[kind].append(target)

    async def _commit(self, query: str, *params: Any) -> tuple[float, float]:
        """Run one statement in its own transaction; (start, end of the COMMIT)."""
        start = time.perf_counter()
        await self.pool.execute(query, *params)
        return start, time.perf_counter()

    async def _record(
        self, kind: Kind, seq: int, committed: tuple[float, float], probes: dict[str, Probe]
    ) -> None:
        start, end = committed
        routes, polls, regressions = await self._until_seen(probes, end)
        lags = list(routes.values())
        lag = None if any(v is None for v in lags) else max(v for v in lags if v is not None)
        self.writes.append(
            Write(
                kind,
                seq,
                round(end - self.t0, 4),
                round((end - start) * 1000, 3),
                lag,
                routes,
                polls,
                regressions,
            )
        )

    async def _until_seen(
        self, probes: dict[str, Probe], committed: float
    ) -> tuple[dict[str, float | None], int, int]:
        """Poll every route until it has shown the write for ``confirm`` seconds in a row,
        up to the cap (plus ``confirm``). Per route, the seconds from
        the commit to the end of the first response of that run (None: not by the cap); the
        requests sent; the responses that showed the old value again after the new."""
        config = self.config
        routes = {name: _Route() for name in probes}
        deadline = committed + config.cap + config.confirm
        polls = 0
        while True:
            sent = time.perf_counter()
            for name, probe in probes.items():
                if not routes[name].confirmed:
                    polls += 1
                    shows = await probe()
                    routes[name].observe(shows, time.perf_counter() - committed, config.confirm)
            now = time.perf_counter()
            if all(r.confirmed for r in routes.values()) or now >= deadline:
                break
            # Every ``poll`` seconds at first, then every tenth of the time elapsed (at most
            # 0.1 s): the resolution stays a tenth of the lag, and writes that stay stale
            # (capture off) do not load the service with thousands of polls per second.
            interval = min(max(config.poll, (now - committed) / 10), max(config.poll, 0.1))
            await asyncio.sleep(max(0.0, interval - (now - sent)))
        seen = {
            name: round(r.since, 5) if r.since is not None and r.since <= config.cap else None
            for name, r in routes.items()
        }
        return seen, polls, sum(r.regressions for r in routes.values())

    # --- the four writes ---

    async def _get_json(self, path: str, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.get(path, headers=headers)
        return response.json() if response.status_code == 200 else None

    async def _menu(self, seq: int, item: tuple[int, str]) -> None:
        item_id, name = item
        price = 100_000 + seq  # a price no item has

        async def in_menu() -> bool:
            menu = await self._get_json("/api/menu")
            return menu is not None and any(
                i["id"] == item_id and i["price_1g"] == price for i in menu["items"]
            )

        async def in_context() -> bool:
            response = await self.http.get("/api/menu/context")
            line = f"- {name}"
            return any(
                row.startswith(line) and f"1g {price} THB" in row
                for row in response.text.splitlines()
            )

        committed = await self._commit(
            "UPDATE menu_items SET price_1g = $1 WHERE id = $2", price, item_id
        )
        await self._record("menu", seq, committed, {"menu": in_menu, "menu/context": in_context})

    async def _profile(self, seq: int, user: str) -> None:
        column = "notes" if seq % 2 else "telegram_username"
        value = f"bench-{seq}-{uuid.uuid4().hex[:6]}"
        token = self.fixture.tokens[user]

        async def shown() -> bool:
            profile = await self._get_json(f"/api/profiles/{user}", token)
            return profile is not None and profile[column] == value

        committed = await self._commit(
            f"UPDATE user_profiles SET {column} = $1 WHERE user_id = $2",  # noqa: S608 - fixed
            value,
            user,
        )
        await self._record("profile", seq, committed, {"profile": shown})

    async def _refused(self, token: str) -> bool:
        response = await self.http.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        return response.status_code in REFUSED

    async def _accepted_twice(self, token: str, what: str) -> bool:
        """Two accepted reads of the token: its entries are in the cache before the write."""
        for _ in range(2):
            response = await self.http.get(
                "/api/auth/me", headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code != 200:
                self.errors.append(
                    f"{what}: token refused before the write ({response.status_code})"
                )
                return False
        return True

    async def _block(self, seq: int, user: str) -> None:
        token = self.fixture.tokens[user]
        if not await self._accepted_twice(token, f"block #{seq}"):
            return
        committed = await self._commit(
            "UPDATE user_profiles SET is_blocked = true WHERE user_id = $1", user
        )
        try:
            await self._record("block", seq, committed, {"auth/me": lambda: self._refused(token)})
        finally:
            await self._commit(
                "UPDATE user_profiles SET is_blocked = false WHERE user_id = $1", user
            )
            await self._until_seen(
                {"unblocked": lambda: self._accepted(token)}, time.perf_counter()
            )

    async def _accepted(self, token: str) -> bool:
        return not await self._refused(token)

    async def _revoke(self, seq: int, user: str) -> None:
        token, session_id = await self.fixture.fresh_token(user)
        if not await self._accepted_twice(token, f"revoke #{seq}"):
            return
        committed = await self._commit(
            "UPDATE auth_sessions SET revoked_at = now() WHERE id = $1", session_id
        )
        await self._record("revoke", seq, committed, {"auth/me": lambda: self._refused(token)})


# --- summaries --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LagSummary:
    """Lags of one kind of write (or ``all``), in ms. Quantiles are over every write, one not
    seen by the cap counting as longer than the cap: ``None`` then means beyond the cap."""

    kind: str
    writes: int
    seen: int
    stale: int  # not seen by the cap
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    commit_p50_ms: float | None


def summarize(writes: list[Write], kind: str = "all") -> LagSummary:
    chosen = [w for w in writes if kind in ("all", w.kind)]
    lags = sorted(float("inf") if w.lag_s is None else w.lag_s for w in chosen)

    def ms(value: float | None) -> float | None:
        return None if value is None or value == float("inf") else round(value * 1000, 1)

    commits = sorted(w.commit_ms for w in chosen)
    return LagSummary(
        kind=kind,
        writes=len(chosen),
        seen=sum(w.lag_s is not None for w in chosen),
        stale=sum(w.lag_s is None for w in chosen),
        p50_ms=ms(quantile(lags, 0.50)),
        p99_ms=ms(quantile(lags, 0.99)),
        max_ms=ms(lags[-1] if lags else None),
        commit_p50_ms=quantile(commits, 0.50),
    )


@dataclass
class ModeResult:
    capture: bool
    triggers: dict[str, list[str]]  # the capture triggers found in the run's database
    summaries: list[LagSummary]
    lags_ms: dict[str, list[float | None]]  # per kind, in order of the writes (None: stale)
    regressions: int  # responses that showed a write's old value after one showed the new
    skipped: dict[str, int]
    errors: list[str]
    readers: dict[str, Any]
    server: dict[str, Any]  # GET /api/cache's changes and verifier sections, /metrics lines
    inconsistent_logged: int  # the verifier's lines in the servers' log
    breaker_logged: dict[str, int]  # the breaker's transitions the servers logged, by kind
    error_lines_logged: int  # ERROR and CRITICAL lines in the servers' log
    loop_late_max_ms: float  # this process's event loop, the most it was late (inflates lags)
    seconds: float
    stale_examples: list[dict[str, Any]] = field(default_factory=list)

    def summary(self, kind: str = "all") -> LagSummary:
        return next(s for s in self.summaries if s.kind == kind)


# --- the service's own figures ------------------------------------------------------------------


async def _server_stats(base_url: str, admin_token: str) -> dict[str, Any]:
    """``stats.changes`` and ``stats.verifier`` of GET /api/cache and the ``ogcache_change_*``
    lines of /metrics, ``SCRAPES`` times over new connections (each reaches one worker)."""
    answers: list[dict[str, Any]] = []
    metrics: list[list[str]] = []
    for _ in range(SCRAPES):
        async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as http:
            response = await http.get(
                "/api/cache", headers={"Authorization": f"Bearer {admin_token}"}
            )
            stats = response.json().get("stats", {}) if response.status_code == 200 else {}
            answers.append({"changes": stats.get("changes"), "verifier": stats.get("verifier")})
        async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as http:
            text = (await http.get("/metrics")).text
            metrics.append(
                [
                    line
                    for line in text.splitlines()
                    if line.startswith("ogcache_change") and "_bucket" not in line
                ]
            )
        await asyncio.sleep(0.05)
    leader = next(
        (a for a in answers if (a["changes"] or {}).get("role") == "leader"),
        next((a for a in answers if a["changes"]), None),
    )
    return {"cache_stats": answers, "leader": leader, "metrics": metrics}


async def leader_histogram(base_url: str) -> dict[str, float] | None:
    """The leader's ``ogcache_change_lag_seconds`` buckets (bound -> cumulative count, and
    ``+Inf``), from whichever of ``SCRAPES`` new connections reaches it; None if none did."""
    for _ in range(SCRAPES):
        async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as http:
            text = (await http.get("/metrics")).text
        if 'ogcache_change_role{role="leader"} 1.0' not in text:
            continue
        buckets: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("ogcache_change_lag_seconds_bucket{"):
                name, value = line.rsplit(" ", 1)
                buckets[name.split('le="')[1].split('"')[0]] = float(value)
        return buckets
    return None


def histogram_over(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, Any] | None:
    """The changes the leader applied between two scrapes: how many, and the bucket bounds
    (ms) that hold their p50 and p99 (None: above the last finite bound)."""
    if before is None or after is None or set(before) != set(after):
        return None
    diff = {bound: after[bound] - before[bound] for bound in after}
    count = diff.get("+Inf", 0.0)

    def bound_ms(q: float) -> float | None:
        for bound, cumulative in sorted(
            ((b, c) for b, c in diff.items() if b != "+Inf"), key=lambda item: float(item[0])
        ):
            if cumulative >= q * count:
                return round(float(bound) * 1000, 3)
        return None

    return {
        "count": count,
        "p50_le_ms": bound_ms(0.5) if count else None,
        "p99_le_ms": bound_ms(0.99) if count else None,
        "buckets": diff,
    }


def _count_log(path: Path) -> tuple[int, int]:
    """(verifier inconsistencies, ERROR or CRITICAL lines) in the servers' log."""
    inconsistent = errors = 0
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            inconsistent += INCONSISTENT in line or INCONSISTENT_TEXT in line
            errors += " ERROR " in line or " CRITICAL " in line
    return inconsistent, errors


async def _drop_keys(url: str, prefix: str) -> int:
    client = Redis.from_url(url)
    removed = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                removed += await client.unlink(*batch)
                batch = []
        if batch:
            removed += await client.unlink(*batch)
    finally:
        await client.aclose()
    return removed


async def _loop_watch(late: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.005)
        late.append(time.perf_counter() - before - 0.005)


# --- one mode -----------------------------------------------------------------------------------


def _service_settings(
    database_url: str,
    redis_url: str,
    secrets_: tuple[str, str],
    capture: bool,
    config: ChangesConfig,
) -> dict[str, Any]:
    jwt_secret, admin_token = secrets_
    return {
        "database_url": database_url,
        "redis_url": redis_url,
        "jwt_secret": jwt_secret,
        "admin_token": admin_token,
        "cache_prefix": f"changes-{uuid.uuid4().hex[:10]}",
        "auto_migrate": False,  # migrated once by prepared_database
        "seed_demo_data": False,
        "refresh_interval": 0,  # no periodic reload: only the capture refreshes entries
        "log_level": "INFO",
        "change_capture": capture,
        "verify_sample": config.verify_sample,
    }


@dataclass(frozen=True, slots=True)
class _Drive:
    writer: Writer
    readers: dict[str, Any]
    loop_late_max_s: float  # the most this process's event loop was late meanwhile
    leader_lag: dict[str, Any] | None  # the leader's lag histogram over the writes


async def _drive(
    server: AppServer, fixture: Fixture, config: ChangesConfig, database_url: str
) -> _Drive:
    """Readers for the whole run, the writer after the warm-up."""
    limits = httpx.Limits(max_connections=config.clients + 2 * config.targets * len(KINDS))
    late: list[float] = []
    stop = asyncio.Event()
    async with (
        httpx.AsyncClient(
            base_url=server.base_url, timeout=config.request_timeout, limits=limits
        ) as http,
        asyncpg.create_pool(asyncpg_dsn(database_url), min_size=2, max_size=4) as pool,
    ):
        watch = asyncio.create_task(_loop_watch(late, stop))
        readers = Readers(http, fixture, config)
        readers.begin()
        try:
            await asyncio.sleep(config.warm)
            writer = Writer(pool, http, fixture, config)
            histogram_before = await leader_histogram(server.base_url)
            await writer.run()
            histogram = histogram_over(histogram_before, await leader_histogram(server.base_url))
        finally:
            figures = await readers.end()
            stop.set()
            await watch
        return _Drive(writer, figures, max(late, default=0.0), histogram)


@dataclass
class _Parts:
    """What one run collected, before it is summarized."""

    writer: Writer
    readers: dict[str, Any]
    stats: dict[str, Any]
    triggers: dict[str, list[str]]
    loop_late_max_s: float
    breaker_events: list[tuple[float, str]] = field(default_factory=list)


async def run_mode(
    capture: bool,
    config: ChangesConfig,
    *,
    server_url: str,
    redis_url: str,
    workdir: Path,
) -> ModeResult:
    """One run on a fresh database: the service with change capture on or off, readers,
    the writer; the figures. Nothing is asserted."""
    began = time.monotonic()
    keys = (secrets.token_urlsafe(48), secrets.token_urlsafe(32))
    async with prepared_database(server_url) as db:
        settings = _service_settings(db, redis_url, keys, capture, config)
        log_path = workdir / f"capture-{'on' if capture else 'off'}.log"
        server = AppServer(settings, log_path, workers=config.workers)
        try:
            async with _fixture(db, keys[0], config) as fixture:
                await server.start()
                drive = await _drive(server, fixture, config, db)
                stats = await _server_stats(server.base_url, keys[1])
                stats["leader_lag_during_writes"] = drive.leader_lag
                parts = _Parts(
                    drive.writer,
                    drive.readers,
                    stats,
                    await capture_triggers(db),
                    drive.loop_late_max_s,
                )
        finally:
            await asyncio.to_thread(server.stop)
            await _drop_keys(redis_url, settings["cache_prefix"])
        parts.breaker_events = server.log_events()
    return _mode_result(capture, parts, log_path, began)


def _mode_result(capture: bool, parts: _Parts, log_path: Path, began: float) -> ModeResult:
    inconsistent, error_lines = _count_log(log_path)
    breaker: dict[str, int] = {}
    for _, event in parts.breaker_events:
        breaker[event] = breaker.get(event, 0) + 1
    writes = sorted(parts.writer.writes, key=lambda w: w.seq)
    return ModeResult(
        capture=capture,
        triggers=parts.triggers,
        summaries=[summarize(writes), *(summarize(writes, kind) for kind in KINDS)],
        lags_ms={
            kind: [
                None if w.lag_s is None else round(w.lag_s * 1000, 1)
                for w in writes
                if w.kind == kind
            ]
            for kind in KINDS
        },
        regressions=sum(w.regressions for w in writes),
        skipped=parts.writer.skipped,
        errors=parts.writer.errors[:10],
        readers=parts.readers,
        server=parts.stats,
        inconsistent_logged=inconsistent,
        breaker_logged=breaker,
        error_lines_logged=error_lines,
        loop_late_max_ms=round(parts.loop_late_max_s * 1000, 1),
        seconds=round(time.monotonic() - began, 1),
        stale_examples=[asdict(w) for w in writes if w.lag_s is None][:3],
    )


# --- the command --------------------------------------------------------------------------------


async def run_changes(
    config: ChangesConfig,
    cost: CostConfig,
    modes: tuple[bool, ...],
    *,
    server_url: str,
    progress: Callable[[str], None],
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Every mode, then the triggers' cost on a database of its own; the report's figures.
    The servers' logs go to ``log_dir`` (kept), by default to a temporary directory."""
    results: list[ModeResult] = []
    with tempfile.TemporaryDirectory(prefix="ogcache-changes-") as tmp:
        workdir = log_dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for capture in modes:
            progress(
                f"change capture {'on' if capture else 'off'}: {config.workers} workers, "
                f"{config.warm:g} s of reads, then a write every {config.interval:g} s for "
                f"{config.duration:g} s (cap {config.cap:g} s)"
            )
            result = await run_mode(
                capture, config, server_url=server_url, redis_url=redis_url(), workdir=workdir
            )
            progress(f"  {_lag_line(result.summary(), config.cap)} ({result.seconds} s)")
            results.append(result)
    trigger_cost: dict[str, Any] | None = None
    if cost.statements > 0:
        progress(
            f"trigger cost: {cost.statements} statements x {len(STATES)} states "
            f"({cost.rounds} alternating batches), per statement"
        )
        async with prepared_database(server_url) as db:
            trigger_cost = await measure_trigger_cost(db, cost)
    return {"modes": results, "trigger_cost": trigger_cost}


def _ms(value: float | None, cap: float) -> str:
    return f">{cap * 1000:.0f}" if value is None else f"{value:.1f}"


def _lag_line(s: LagSummary, cap: float) -> str:
    return (
        f"{s.writes} writes, {s.stale} stale at the cap, lag p50 {_ms(s.p50_ms, cap)} ms, "
        f"p99 {_ms(s.p99_ms, cap)} ms"
    )


def lag_table(results: list[ModeResult], cap: float) -> str:
    header = (
        f"{'capture':<7} {'writes':<7} {'count':>5} {'stale@cap':>9} {'p50':>7} {'p99':>7} "
        f"{'max':>7} {'commit p50':>10}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        for s in r.summaries:
            commit = "-" if s.commit_p50_ms is None else f"{s.commit_p50_ms:.2f}"
            lines.append(
                f"{'on' if r.capture else 'off':<7} {s.kind:<7} {s.writes:>5} {s.stale:>9} "
                f"{_ms(s.p50_ms, cap):>7} {_ms(s.p99_ms, cap):>7} {_ms(s.max_ms, cap):>7} "
                f"{commit:>10}"
            )
    return "\n".join(lines)


def _round(value: Any) -> Any:
    return round(value, 1) if isinstance(value, float) else value


def verifier_totals(result: ModeResult) -> tuple[int, int, int] | None:
    """(verified, inconsistent, workers seen) from GET /api/cache: the last answer of each
    worker, told apart by its change-capture role (one leader, the others standbys)."""
    last: dict[str, dict[str, Any]] = {}
    for answer in result.server["cache_stats"]:
        role = (answer.get("changes") or {}).get("role")
        if answer.get("verifier") and role:
            last[role] = answer["verifier"]
    if not last:
        return None
    return (
        sum(int(v.get("verified") or 0) for v in last.values()),
        sum(int(v.get("inconsistent") or 0) for v in last.values()),
        len(last),
    )


def service_table(results: list[ModeResult]) -> str:
    header = (
        f"{'capture':<7} {'applied':>7} {'invalidated':>11} {'lag p50<=':>9} {'p99<=':>6} "
        f"{'verified':>8} {'inconsistent':>12} {'(log)':>5} {'old after new':>13} "
        f"{'suspected':>9} {'reads':>6} {'failed':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        changes = (r.server.get("leader") or {}).get("changes") or {}
        during = r.server.get("leader_lag_during_writes") or {}
        totals = verifier_totals(r)
        verified, inconsistent = (totals[0], totals[1]) if totals else ("-", "-")
        lines.append(
            f"{'on' if r.capture else 'off':<7} {changes.get('applied', '-'):>7} "
            f"{changes.get('invalidated', '-'):>11} {during.get('p50_le_ms', '-'):>9} "
            f"{during.get('p99_le_ms', '-'):>6} {verified:>8} {inconsistent:>12} "
            f"{r.inconsistent_logged:>5} {r.regressions:>13} "
            f"{r.breaker_logged.get('suspected', 0):>9} {r.readers['requests']:>6} "
            f"{r.readers['failed']:>6}"
        )
    return "\n".join(lines)


def _server_line(r: ModeResult) -> str:
    leader = r.server.get("leader")
    changes = (leader or {}).get("changes")
    verifier = [
        (v.get("verified"), v.get("inconsistent"))
        for v in ((a.get("verifier") or {}) for a in r.server["cache_stats"])
    ]
    if not changes:
        shown = "GET /api/cache has no stats.changes"
    else:
        lag = changes.get("lagMs") or {}
        shown = (
            f"stats.changes: enabled {changes.get('enabled')}, role {changes.get('role')}, "
            f"applied {changes.get('applied')}, invalidated {changes.get('invalidated')}, "
            f"failures {changes.get('failures')}, errors {changes.get('errors')}, lagMs p50 "
            f"{_round(lag.get('p50'))} p99 {_round(lag.get('p99'))} (recent ones; "
            f"{lag.get('count')} in all), backlog {changes.get('backlog')}"
        )
    during = r.server.get("leader_lag_during_writes")
    if during:
        shown += (
            f"; leader's lag histogram over the writes: {during['count']:.0f} changes, p50 <= "
            f"{during['p50_le_ms']} ms, p99 <= {during['p99_le_ms']} ms"
        )
    return (
        f"capture {'on' if r.capture else 'off'}: {shown}; verifier: {r.inconsistent_logged} "
        f"'{INCONSISTENT}' log lines, stats.verifier (verified, inconsistent) per scrape "
        f"{verifier}; "
        f"ERROR log lines {r.error_lines_logged}; breaker {r.breaker_logged or 'quiet'}; "
        f"old value after the new {r.regressions}; reads {r.readers['requests']} "
        f"(failed {r.readers['failed']}, p50 {r.readers['latency']['p50_ms']} ms, "
        f"p99 {r.readers['latency']['p99_ms']} ms); skipped writes {sum(r.skipped.values())}, "
        f"writer errors {len(r.errors)}; this process's loop late at most {r.loop_late_max_ms} ms"
    )


def cost_table(cost: dict[str, Any]) -> str:
    header = (
        f"{'statement':<32} {'p50 on':>7} {'p50 off':>7} {'ratio':>5} {'p99 on':>7} "
        f"{'p99 off':>7} {'ratio':>5} {'outbox rows':>11}"
    )
    lines = [header, "-" * len(header)]

    def us(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    for s in cost["statements"]:
        p50, p99 = s["p50_us"], s["p99_us"]
        rows = s["outbox_rows_per_statement"]
        lines.append(
            f"{s['statement']:<32} {us(p50['enabled']):>7} {us(p50['disabled']):>7} "
            f"{s['p50_ratio'] or '-':>5} {us(p99['enabled']):>7} {us(p99['disabled']):>7} "
            f"{s['p99_ratio'] or '-':>5} {(f'{max(rows):g}' if rows else '-'):>11}"
        )
    return "\n".join(lines)


def concurrent_line(cost: dict[str, Any]) -> str:
    found = cost.get("concurrent")
    if not found:
        return ""
    rate = found["commits_per_s"]
    return (
        f"{found['writers']} concurrent writers (own rows): {rate['enabled']} commits/s with "
        f"the triggers, {rate['disabled']} without (ratio {found['ratio']})"
    )


def checks(results: list[ModeResult]) -> dict[str, bool]:
    on = next((r for r in results if r.capture), None)
    if on is None:
        return {}
    total = on.summary()
    found = {
        "capture_on_commit_to_visible_p99_le_1s": total.p99_ms is not None
        and total.p99_ms <= MAX_P99_S * 1000,
        "capture_on_no_write_stale_at_cap": total.writes > 0 and total.stale == 0,
        "capture_on_no_failed_reads": on.readers["failed"] == 0,
    }
    if verifier_present(on):  # a build without the verifier has nothing to say here
        found["capture_on_verifier_inconsistencies_0"] = on.inconsistent_logged == 0
    return found


def verifier_present(result: ModeResult) -> bool:
    return any(a.get("verifier") for a in result.server["cache_stats"])


def add_parser(commands: Any) -> None:
    d, c = ChangesConfig(), CostConfig()
    parser = commands.add_parser(
        "changes",
        help="database writes reaching the cache: commit-to-visible lag, capture on and off; "
        "the triggers' cost",
    )
    parser.add_argument("--duration", type=float, default=d.duration, help="seconds of writes")
    parser.add_argument("--interval", type=float, default=d.interval, help="seconds per write")
    parser.add_argument("--cap", type=float, default=d.cap, help="longest wait for a write, s")
    parser.add_argument("--poll", type=float, default=d.poll, help="seconds between polls")
    parser.add_argument(
        "--confirm", type=float, default=d.confirm, help="seconds a write must stay seen"
    )
    parser.add_argument("--clients", type=int, default=d.clients, help="reading clients")
    parser.add_argument("--rate", type=float, default=d.rate, help="reads/s in all (0: full)")
    parser.add_argument("--warm", type=float, default=d.warm, help="seconds of reads first")
    parser.add_argument("--workers", type=int, default=d.workers, help="service workers")
    parser.add_argument("--targets", type=int, default=d.targets, help="targets per write kind")
    parser.add_argument("--verify-sample", type=float, default=d.verify_sample)
    parser.add_argument("--modes", default="on,off", help="change capture: on, off or on,off")
    parser.add_argument(
        "--statements", type=int, default=c.statements, help="trigger cost (0: not measured)"
    )
    parser.add_argument(
        "--rounds", type=int, default=c.rounds, help="trigger cost: alternating batches"
    )
    parser.add_argument("--output", default=None, help="default bench/results/changes.json")
    parser.add_argument("--log-dir", default=None, help="keep the servers' logs there")


def command(args: Any, database_url: str, results: Path) -> int:
    modes = tuple(m.strip() == "on" for m in args.modes.split(",") if m.strip())
    if not modes or any(m.strip() not in ("on", "off") for m in args.modes.split(",")):
        print("--modes: on, off or on,off")
        return 2
    config = ChangesConfig(
        duration=args.duration,
        interval=args.interval,
        cap=args.cap,
        poll=args.poll,
        clients=args.clients,
        rate=args.rate,
        warm=args.warm,
        workers=args.workers,
        targets=args.targets,
        verify_sample=args.verify_sample,
    )
    cost = CostConfig(statements=args.statements, rounds=args.rounds)
    load_before = os.getloadavg()
    began = time.monotonic()
    found = asyncio.run(
        run_changes(
            config,
            cost,
            modes,
            server_url=database_url,
            progress=lambda m: print(m, flush=True),
            log_dir=Path(args.log_dir) if args.log_dir else None,
        )
    )
    report = _report(config, cost, found, load_before, began)
    print()
    print(format_report(report, found["modes"]))
    output = Path(args.output) if args.output else results / "changes.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nsaved {output} ({report['duration_s']} s)")
    return 0 if all(report["checks"].values()) else 1


def _report(
    config: ChangesConfig,
    cost: CostConfig,
    found: dict[str, Any],
    load_before: tuple[float, float, float],
    began: float,
) -> dict[str, Any]:
    modes: list[ModeResult] = found["modes"]
    on = next((r for r in modes if r.capture), None)
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench changes " + " ".join(sys.argv[2:]),
        "machine": machine(load_before),
        "servers": {"database": "a database of its own per run", "redis": redis_url()},
        "config": asdict(config),
        "cost_config": asdict(cost),
        "feature": {
            "capture_triggers": on.triggers if on else None,
            "service_reports_changes": bool(on and on.server.get("leader")),
            "service_reports_verifier": bool(on and verifier_present(on)),
        },
        "duration_s": round(time.monotonic() - began, 1),
        "checks": checks(modes),
        "verifier_totals": {  # (verified, inconsistent, workers seen) from GET /api/cache
            "on" if r.capture else "off": verifier_totals(r) for r in modes
        },
        "modes": [asdict(r) for r in modes],
        "trigger_cost": found["trigger_cost"],
    }


def format_report(report: dict[str, Any], modes: list[ModeResult]) -> str:
    c = report["config"]
    load = report["machine"]
    lines = [
        f"Commit-to-visible lag, ms: a write every {c['interval']:g} s for {c['duration']:g} s "
        f"per mode (menu price, profile field, block, revoke in turn), routes polled every "
        f"{c['poll'] * 1000:g} ms (later every tenth of the time elapsed) until they have shown "
        f"it for {c['confirm']:g} s; lag = COMMIT returned -> the first of those responses; cap "
        f"{c['cap']:g} s ('>' = stale at the cap; quantiles over all writes). "
        f"{c['workers']} service workers, {c['clients']} "
        f"readers at {c['rate']:g} req/s. Load average before {load.get('load_average_before')}"
        f", after {load['load_average_after']}.",
        f"Capture triggers in the database: {report['feature']['capture_triggers'] or 'none'}",
        lag_table(modes, c["cap"]),
        "",
        "The service: applied/invalidated (GET /api/cache, the leader); lag p50/p99: bucket "
        "bounds (ms) of the leader's ogcache_change_lag_seconds over the writes only; "
        "verified/inconsistent: the verifier (GET /api/cache, both workers), (log): its lines; "
        "old after new: responses showing a write's old value after one showed the new; "
        "suspected: breaker suspicions logged",
        service_table(modes),
        "",
        *(_server_line(r) for r in modes),
    ]
    if report["trigger_cost"]:
        cc = report["cost_config"]
        lines += [
            "",
            f"Trigger cost, us per statement (its own transaction), over {cc['statements']} "
            f"statements per row in {cc['rounds']} alternating batches, capture triggers "
            f"enabled (on) / disabled (off); outbox rows: written per statement (on)",
            cost_table(report["trigger_cost"]),
            concurrent_line(report["trigger_cost"]),
        ]
    on = next((r for r in modes if r.capture), None)
    if on is not None and on.summary().p99_ms is not None:
        aim = on.summary().p99_ms <= AIM_P99_S * 1000  # type: ignore[operator]
        lines += ["", f"aim p99 <= {AIM_P99_S * 1000:.0f} ms: {'met' if aim else 'not met'}"]
    lines += [""] + [f"{'PASS' if ok else 'FAIL'}  {name}" for name, ok in report["checks"].items()]
    return "\n".join(lines)
