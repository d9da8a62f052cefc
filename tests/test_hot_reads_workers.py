"""``ogcache serve --workers 2`` on PostgreSQL and Redis: the in-process tier (L1) of every
worker, answered before the router (``ogcache.api.hot_reads``), never outlives a write.

Many keep-alive connections (one ``httpx.AsyncClient`` with a single connection each) are
spread over the workers (each connection's worker is the first pid of ``GET /api/cache``'s
``workers`` breakdown). Each round warms every connection's worker tier with a few reads,
makes one write on one connection (or, for a revocation, in this process), and as soon as
its response is back reads on every connection at once. Every read must show the write:

- (a) a logged-out or revoked token, or a blocked user's token, is refused (401) by every
  worker on the next request;
- (b) a profile PATCH by the user and an admin's menu price change are shown by every worker
  on the next read;
- (c) under concurrent load on shared connections, no answer carries another user's identity
  or profile.

A violation is recorded with the connection's worker and, when it clears within a short
poll, how long it took; the test fails if there is any. ``-s`` prints a summary per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bench.resilience import AppServer, prepared_database
from ogcache.config import load_settings
from ogcache.runtime import Runtime

pytestmark = pytest.mark.slow

WORKERS = 2
CONNECTIONS = 16
TARGET_PER_WORKER = 6  # connections each worker should hold (new ones until it does)
MIN_PER_WORKER = 3  # and must hold
ROUNDS = 30
WARM_READS = 2  # per connection and round (even connections: /me then the profile)
POLL_EVERY = 0.05  # after a violation: re-read until it clears, at most POLL_MAX
POLL_MAX = 2.0
POLL_BUDGET = 8.0  # of polling per test, so that a broken guarantee still ends in time
CROSS_WAVES = 30

USER = "web_demo_alice"  # demo users of the seed (ogcache.db.demo_data)
WRITER = "tg_100000001"
USER_A = "tg_100000002"
USER_B = "web_demo_niran"


@dataclass
class Service:
    base: str
    admin: str
    database_url: str
    redis_url: str
    jwt_secret: str
    cache_prefix: str
    pids: set[int]
    runtime: Runtime  # this process's, without Redis: issues tokens

    async def token(self, user_id: str) -> tuple[str, uuid.UUID]:
        issued = await self.runtime.auth.issue_token(user_id)
        return issued.access_token, issued.session_id


async def _worker_pids(base: str) -> set[int]:
    """Wait until every worker has published its statistics once; their pids."""
    workers: list[dict[str, Any]] = []
    for _ in range(300):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            workers = (await http.get("/api/cache")).json()["workers"]
        alive = {worker["pid"] for worker in workers if worker["alive"]}
        if len(alive) >= WORKERS:
            return alive
        await asyncio.sleep(0.2)
    raise AssertionError(f"not every worker published its statistics: {workers}")


@pytest.fixture(scope="module")
async def service(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    jwt_secret = secrets.token_urlsafe(48)
    admin = secrets.token_urlsafe(32)
    prefix = f"hotreads-{uuid.uuid4().hex[:10]}"
    log = tmp_path_factory.mktemp("hot-reads-workers") / "service.log"
    async with prepared_database(postgres_url) as database_url:
        settings = {
            "database_url": database_url,
            "redis_url": redis_url,
            "jwt_secret": jwt_secret,
            "admin_token": admin,
            "cache_prefix": prefix,
            "auto_migrate": False,
            "seed_demo_data": False,
            "refresh_interval": 0,
            "verify_sample": 0,
            "log_level": "WARNING",
        }
        server = AppServer(settings, log, workers=WORKERS)
        await server.start()
        try:
            local = load_settings(
                _env_file=None, database_url=database_url, redis_url=None, jwt_secret=jwt_secret
            )
            async with Runtime.open(local) as runtime:
                pids = await _worker_pids(server.base_url)
                yield Service(
                    server.base_url, admin, database_url, redis_url, jwt_secret, prefix, pids,
                    runtime,
                )  # fmt: skip
        finally:
            await asyncio.to_thread(server.stop)


# --- connections pinned to workers ---------------------------------------------------------


def _local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    address = stream.get_extra_info("client_addr")
    return int(address[1])


@dataclass
class Connection:
    """One keep-alive connection; ``pid`` is the worker holding it (0: not known, after the
    server closed it and httpx opened another)."""

    index: int
    http: httpx.AsyncClient
    pid: int = 0
    port: int = 0
    reconnects: int = 0

    async def get(self, path: str, token: str | None = None) -> httpx.Response:
        return await self.request("GET", path, token)

    async def request(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        response = await self.http.request(method, path, headers=headers, json=body)
        port = _local_port(response)
        if self.port and port != self.port:
            self.reconnects += 1
            self.pid = 0
        self.port = port
        return response

    async def identify(self) -> None:
        response = await self.get("/api/cache")
        assert response.status_code == 200, response.text
        self.pid = response.json()["workers"][0]["pid"]


def _client(base: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=base, timeout=15, limits=limits)


@pytest.fixture
async def connections(service: Service) -> AsyncIterator[list[Connection]]:
    """CONNECTIONS connections, at least MIN_PER_WORKER on each worker."""
    opened: list[Connection] = []
    try:
        opened = [Connection(i, _client(service.base)) for i in range(CONNECTIONS)]
        await asyncio.gather(*(c.identify() for c in opened))
        for _ in range(64):
            counts = {pid: sum(c.pid == pid for c in opened) for pid in service.pids}
            short = [pid for pid, n in counts.items() if n < TARGET_PER_WORKER]
            if not short:
                break
            extra = Connection(len(opened), _client(service.base))
            await extra.identify()
            if extra.pid in short:
                crowded = max(counts, key=lambda pid: counts[pid])
                dropped = next(c for c in opened if c.pid == crowded)
                opened.remove(dropped)
                await dropped.http.aclose()
                opened.append(extra)
            else:
                await extra.http.aclose()
        counts = {pid: sum(c.pid == pid for c in opened) for pid in service.pids}
        assert min(counts.values()) >= MIN_PER_WORKER, f"connections per worker: {counts}"
        random.shuffle(opened)  # the writer of round r is connection r: on every worker
        for index, connection in enumerate(opened):
            connection.index = index
        yield opened
    finally:
        for connection in opened:
            await connection.http.aclose()


# --- rounds --------------------------------------------------------------------------------

Read = Callable[[Connection], Awaitable[httpx.Response]]
Check = Callable[[httpx.Response], bool]


@dataclass
class Violation:
    round: int
    connection: int
    pid: int
    writer_pid: int  # the worker that made the write; 0: this process (a revocation)
    answer: str
    cleared_after: float | None  # seconds; None: still wrong after POLL_MAX (or not polled)


@dataclass
class Tally:
    name: str
    rounds: int = 0
    reads: int = 0
    violations: list[Violation] = field(default_factory=list)
    reconnects: int = 0
    polled: float = 0.0
    worker_rounds: dict[int, int] = field(default_factory=dict)  # pid: rounds it was read in

    def summary(self) -> str:
        cleared = [v.cleared_after for v in self.violations if v.cleared_after is not None]
        stuck = sum(v.cleared_after is None for v in self.violations)
        rounds_hit = len({v.round for v in self.violations})
        return (
            f"{self.name}: rounds={self.rounds} reads={self.reads} "
            f"violations={len(self.violations)} in {rounds_hit} rounds "
            f"(cleared={len(cleared)}"
            + (f", after {min(cleared):.3f}-{max(cleared):.3f} s" if cleared else "")
            + f", not cleared in {POLL_MAX} s or not polled={stuck}) "
            f"reconnects={self.reconnects} rounds per worker={self.worker_rounds}"
        )

    def examples(self) -> str:
        return "\n".join(repr(v) for v in self.violations[:10])


async def _warm(connections: list[Connection], reads: list[Read], ok: Check) -> None:
    async def one(connection: Connection) -> None:
        if connection.pid == 0:
            await connection.identify()
        for i in range(WARM_READS):
            response = await reads[i % len(reads)](connection)
            assert ok(response), (connection.index, response.status_code, response.text)

    await asyncio.gather(*(one(c) for c in connections))


async def _read_everywhere(
    tally: Tally,
    round_: int,
    connections: list[Connection],
    read: Read,
    ok: Check,
    writer: Connection | None,
) -> None:
    """Read on every connection at once; record the answers that do not show the write, and
    poll those connections until they do (at most POLL_MAX, within the test's budget)."""
    pids = [c.pid for c in connections]  # before reading: a reconnect resets it
    writer_pid = 0 if writer is None else writer.pid
    answers = await asyncio.gather(*(read(c) for c in connections))
    tally.rounds += 1
    tally.reads += len(answers)
    for pid in set(pids):
        tally.worker_rounds[pid] = tally.worker_rounds.get(pid, 0) + 1
    wrong = [
        (connection, pid, answer)
        for connection, pid, answer in zip(connections, pids, answers, strict=True)
        if not ok(answer)
    ]
    if not wrong:
        return
    started = time.monotonic()
    poll = tally.polled < POLL_BUDGET

    async def clear(connection: Connection) -> float | None:
        while poll and time.monotonic() - started < POLL_MAX:
            await asyncio.sleep(POLL_EVERY)
            if ok(await read(connection)):
                return time.monotonic() - started
        return None

    cleared = await asyncio.gather(*(clear(c) for c, _, _ in wrong))
    tally.polled += time.monotonic() - started
    for (connection, pid, answer), after in zip(wrong, cleared, strict=True):
        text = f"{answer.status_code} {answer.text[:160]}"
        violation = Violation(round_, connection.index, pid, writer_pid, text, after)
        tally.violations.append(violation)


async def _local_tiers(connections: list[Connection]) -> dict[int, dict[str, float]]:
    """Each worker's in-process tier gauges, scraped on a connection it holds."""
    tiers: dict[int, dict[str, float]] = {}
    for connection in connections:
        if connection.pid in tiers or connection.pid == 0:
            continue
        response = await connection.get("/metrics")
        figures = {"hits": 0.0}
        for line in response.text.splitlines():
            name, _, value = line.partition(" ")
            if name.startswith("ogcache_cache_local_hits_total") and value:
                figures["hits"] += float(value)
            elif name.startswith("ogcache_cache_local_") and value:
                figures[name.removeprefix("ogcache_cache_local_")] = float(value)
        tiers[connection.pid] = figures
    return tiers


async def _finish(tally: Tally, connections: list[Connection]) -> None:
    """Report; fail on any violation, or if a worker's tier was not in use (a vacuous pass)."""
    tally.reconnects = sum(c.reconnects for c in connections)
    tiers = await _local_tiers(connections)
    spread = {pid: sum(c.pid == pid for c in connections) for pid in tiers}
    print(f"\nSUMMARY {tally.summary()} connections per worker={spread} local tiers={tiers}")
    assert not tally.violations, f"{tally.summary()}\n{tally.examples()}"
    assert len(tally.worker_rounds) >= WORKERS, tally.summary()
    assert all(tier.get("live") == 1 for tier in tiers.values()), tiers


def _refused(response: httpx.Response) -> bool:
    return response.status_code == 401


def _ok(response: httpx.Response) -> bool:
    return response.status_code == 200


def _me_or_profile(user_id: str, token: str) -> list[Read]:
    return [
        lambda c: c.get("/api/auth/me", token),
        lambda c: c.get(f"/api/profiles/{user_id}", token),
    ]


async def _token_rounds(
    name: str,
    service: Service,
    connections: list[Connection],
    user: Callable[[int], Awaitable[str]],
    end: Callable[[int, Connection, str, uuid.UUID, str], Awaitable[Connection | None]],
) -> None:
    """Rounds of (a): a fresh token of ``user(round)`` warmed everywhere, ended by ``end``,
    then read on every connection (even connections ``/me``, odd ones the profile)."""
    tally = Tally(name)
    for round_ in range(ROUNDS):
        user_id = await user(round_)
        token, session_id = await service.token(user_id)
        reads = _me_or_profile(user_id, token)
        await _warm(connections, reads, _ok)
        writer = connections[round_ % len(connections)]
        wrote = await end(round_, writer, token, session_id, user_id)

        async def read(c: Connection, reads: list[Read] = reads) -> httpx.Response:
            return await reads[c.index % 2](c)

        await _read_everywhere(tally, round_, connections, read, _refused, wrote)
    await _finish(tally, connections)


# --- (a) refusals --------------------------------------------------------------------------


async def test_a_logged_out_token_is_refused_by_every_worker_on_the_next_request(
    service: Service, connections: list[Connection]
) -> None:
    async def user(_round: int) -> str:
        return USER

    async def logout(
        _r: int, writer: Connection, token: str, _s: uuid.UUID, _u: str
    ) -> Connection | None:
        response = await writer.request("POST", "/api/auth/logout", token)
        assert response.status_code == 204, response.text
        return writer

    await _token_rounds("logout", service, connections, user, logout)


async def test_a_revoked_session_is_refused_by_every_worker_on_the_next_request(
    service: Service, connections: list[Connection]
) -> None:
    """The session revoked by another process of the deployment (``AuthService.
    revoke_session`` with the service's Redis and prefix, as an admin tool would)."""
    settings = load_settings(
        _env_file=None,
        database_url=service.database_url,
        redis_url=service.redis_url,
        jwt_secret=service.jwt_secret,
        cache_prefix=service.cache_prefix,
        refresh_interval=0,
        verify_sample=0,
        log_level="WARNING",
    )
    async with Runtime.open(settings) as admin_runtime:

        async def user(_round: int) -> str:
            return USER

        async def revoke(
            _r: int, _w: Connection, _t: str, session: uuid.UUID, _u: str
        ) -> Connection | None:
            await admin_runtime.auth.revoke_session(session)
            return None

        await _token_rounds("revoke", service, connections, user, revoke)


async def test_a_blocked_users_token_is_refused_by_every_worker_on_the_next_request(
    service: Service, connections: list[Connection]
) -> None:
    admin = connections[0]
    run = uuid.uuid4().hex[:6]

    async def user(round_: int) -> str:  # a new user each round
        user_id = f"hw_blocked_{run}_{round_}"
        response = await admin.request("POST", "/api/profiles", service.admin, {"user_id": user_id})
        assert response.status_code == 200, response.text
        return user_id

    async def block(
        _r: int, writer: Connection, _t: str, _s: uuid.UUID, user_id: str
    ) -> Connection | None:
        response = await writer.request(
            "PATCH", f"/api/profiles/{user_id}", service.admin, {"is_blocked": True}
        )
        assert response.status_code == 200, response.text
        return writer

    await _token_rounds("block", service, connections, user, block)


# --- (b) writes ----------------------------------------------------------------------------


async def test_b_a_profile_write_is_read_back_by_every_worker(
    service: Service, connections: list[Connection]
) -> None:
    token, _ = await service.token(WRITER)
    path = f"/api/profiles/{WRITER}"
    tally = Tally("profile write")
    for round_ in range(ROUNDS):

        async def read(c: Connection) -> httpx.Response:
            return await c.get(path, token)

        await _warm(connections, [read], _ok)
        marker = f"r{round_}-{secrets.token_hex(4)}"
        writer = connections[round_ % len(connections)]
        response = await writer.request("PATCH", path, token, {"preferences": {"hw": marker}})
        assert response.status_code == 200, response.text

        def shows(answer: httpx.Response, marker: str = marker) -> bool:
            return answer.status_code == 200 and answer.json()["preferences"].get("hw") == marker

        await _read_everywhere(tally, round_, connections, read, shows, writer)
    await _finish(tally, connections)


async def test_b_a_menu_price_change_is_read_back_by_every_worker(
    service: Service, connections: list[Connection]
) -> None:
    menu = (await connections[0].get("/api/menu")).json()
    item = next(item for item in menu["items"] if not item["is_concentrate"])
    item_id, original = item["id"], item["price_1g"]
    tally = Tally("menu price")
    try:
        for round_ in range(ROUNDS):

            async def read(c: Connection) -> httpx.Response:
                return await c.get("/api/menu")

            await _warm(connections, [read], _ok)
            price = 1000 + 7 * round_ + random.randrange(7)
            writer = connections[round_ % len(connections)]
            response = await writer.request(
                "PATCH", f"/api/menu/items/{item_id}", service.admin, {"price_1g": price}
            )
            assert response.status_code == 200, response.text

            def shows(answer: httpx.Response, price: int = price) -> bool:
                if answer.status_code != 200:
                    return False
                item = next(i for i in answer.json()["items"] if i["id"] == item_id)
                return bool(item["price_1g"] == price)

            await _read_everywhere(tally, round_, connections, read, shows, writer)
    finally:  # later tests may read the menu
        with contextlib.suppress(httpx.HTTPError):
            await connections[0].request(
                "PATCH", f"/api/menu/items/{item_id}", service.admin, {"price_1g": original}
            )
    await _finish(tally, connections)


# --- (c) nothing crosses users ---------------------------------------------------------------


async def test_c_no_answer_carries_another_users_identity_or_profile(
    service: Service, connections: list[Connection]
) -> None:
    """Two users read ``/me`` and their own profiles over the same connections at once (and
    each other's profile, which must be refused), while both keep changing their profiles."""
    tokens = {USER_A: (await service.token(USER_A))[0], USER_B: (await service.token(USER_B))[0]}
    other = {USER_A: USER_B, USER_B: USER_A}
    counts = {"answers": 0, "own": 0, "foreign refused": 0, "writes": 0}
    crossed: list[str] = []

    async def one(connection: Connection, wave: int) -> None:
        calls = [(u, kind) for u in tokens for kind in ("me", "own", "foreign")]
        random.shuffle(calls)
        if wave % 5 == connection.index % 5:  # some connections write, between the reads
            user_id = random.choice(list(tokens))
            calls.insert(random.randrange(len(calls)), (user_id, "write"))
        for user_id, kind in calls:
            token = tokens[user_id]
            if kind == "me":
                response = await connection.get("/api/auth/me", token)
            elif kind == "own":
                response = await connection.get(f"/api/profiles/{user_id}", token)
            elif kind == "foreign":
                response = await connection.get(f"/api/profiles/{other[user_id]}", token)
            else:
                response = await connection.request(
                    "PATCH",
                    f"/api/profiles/{user_id}",
                    token,
                    {"preferences": {"hw_wave": f"{user_id}-{wave}"}},
                )
                counts["writes"] += 1
            counts["answers"] += 1
            if kind == "foreign":
                if response.status_code == 200:
                    crossed.append(f"{user_id} read {other[user_id]}: {response.text[:120]}")
                else:
                    counts["foreign refused"] += 1
                continue
            assert response.status_code == 200, (kind, response.status_code, response.text)
            body = response.json()
            counts["own"] += 1
            if body["user_id"] != user_id:
                crossed.append(f"{user_id} {kind} got {body['user_id']} (pid {connection.pid})")
            wave_marker = body.get("preferences", {}).get("hw_wave")
            if wave_marker is not None and not wave_marker.startswith(f"{user_id}-"):
                crossed.append(f"{user_id} {kind} got preferences {wave_marker}")

    for wave in range(CROSS_WAVES):
        await asyncio.gather(*(one(c, wave) for c in connections))
    print(f"\nSUMMARY cross-user: waves={CROSS_WAVES} {counts} crossed={len(crossed)}")
    assert not crossed, crossed[:10]
    assert counts["foreign refused"] == CROSS_WAVES * len(connections) * 2
