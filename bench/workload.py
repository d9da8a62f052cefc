"""A chat backend's workload through the real services, with the cache and without it.

``python -m bench workload`` (:func:`run_workload`):

- **population**: ``users`` profiles (10,000), each with one auth session and its bearer
  token and one conversation of a few messages, inserted in bulk into a fresh, migrated
  PostgreSQL database with the demo menu;
- **traffic**: every request comes from a user drawn with Zipf(``zipf_s``) popularity.
  ``write_fraction`` (2 %) of requests are writes, the rest reads. A *read request* is what a
  chat backend does to answer a page view or a message: verify the user's bearer token
  (``AuthService.verify``), read the profile (``ProfileService.get``), read the open
  conversation with its messages (``ConversationService.get``), read the menu
  (``MenuService.get_menu``, with concentrates in ``concentrates_fraction`` of requests), and
  in ``recent_fraction`` of requests also list the user's recent conversations. A *write
  request* verifies the token, then adds a message to the conversation (60 %), updates the
  profile's preferences (30 %), or logs out and in again (10 %: the session is revoked and a
  new token issued);
- **modes**: ``cached`` is the services as the runtime builds them, over Redis (a
  redis-server of this run's own unless a URL is given). ``uncached`` is the same service
  classes over the same kind of database with :class:`PassThroughCache` in place of the
  cache: every read calls its loader (the database query) directly, nothing is stored,
  nothing is invalidated; it adds one Python call per read. ``degraded`` (optional) is the
  runtime's own cache whose Redis URL is a closed port: the breaker is open, every read goes
  to the database, through single-flight and the breaker's checks; it is the "without cache"
  of ``python -m bench http``;
- **phases**: a warm-up of ``warmup_requests`` on the cached mode's database, by
  ``warmup_concurrency`` concurrent clients, which stands for the service's history (Zipf
  keeps meeting users never seen before for a long time: after 100,000 requests about a
  tenth of the users still have not come). The database is then copied (``CREATE DATABASE
  ... TEMPLATE``) for the other modes, so that every mode starts the measured phase from the
  same rows. The measured phase runs the same sequence of requests in every mode, in
  ``rounds`` chunks that alternate between the modes (the machine may be busy: neighbouring
  moments compare fairly), one request at a time, so each call's database statements can be
  attributed to it.

Measured per call: latency, and database statements (SQLAlchemy's ``before_cursor_execute``
on the mode's engine; a transaction's ``BEGIN``/``COMMIT`` are not statements). A read is
*served without the database* when it ran no statement. A *first-time read* is the read of a
key (user's token, profile, recent list, conversation, menu variant) that no earlier request
of the run, warm-up included, read; a login's new token is not one (the user was read before).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import asyncpg
import jwt
from sqlalchemy import event, insert
from sqlalchemy.engine import make_url

from bench._support import (
    asyncpg_dsn,
    create_database,
    drop_database,
    machine,
    quantile,
    unique_name,
)
from ogcache.cache import MISSING, Namespace
from ogcache.config import Settings, load_settings
from ogcache.db.models import (
    AuthSession,
    Conversation,
    ConversationMessage,
    UserProfile,
    utc_now,
)
from ogcache.db.seed import seed_demo_data
from ogcache.errors import AuthenticationError
from ogcache.runtime import Runtime
from ogcache.schemas import MessageCreate, ProfileUpdate
from ogcache.services import (
    AuthService,
    ConversationService,
    MenuService,
    ProfileService,
    ServiceContext,
)
from ogcache.services.auth import ALGORITHM, AUDIENCE, ISSUER
from support.servers import RedisProcess, free_port

__all__ = [
    "MODES",
    "PassThroughCache",
    "WorkloadConfig",
    "WorkloadResult",
    "format_report",
    "run_workload",
]

T = TypeVar("T")

Mode = Literal["cached", "uncached", "degraded"]
MODES: tuple[Mode, ...] = ("cached", "uncached", "degraded")
READ_OPS = ("auth", "profile", "recent", "conversation", "menu")
WRITE_KINDS = ("add_message", "update_profile", "relogin")
WRITE_MIX = (0.6, 0.3, 0.1)  # of the write requests, in the order of WRITE_KINDS
TOKEN_LIFETIME = timedelta(hours=24)  # seeded tokens outlive any run
TARGET_READS_WITHOUT_DB = 0.96
MAX_FIRST_TIME = 0.01

_MESSAGES = (
    "Hi! What indica do you have today?",
    "How strong is the Lemon Cherry Gelato?",
    "Can I get 5 grams delivered to Patong tonight?",
    "What's the difference between the 1g and 5g price?",
    "Do you have anything with CBG for sleep?",
    "Thanks, I'll come by the shop after 8.",
)


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    users: int = 10_000
    zipf_s: float = 1.0
    write_fraction: float = 0.02
    recent_fraction: float = 0.2  # read requests that also list the recent conversations
    concentrates_fraction: float = 0.2  # menu reads of the variant with concentrates
    warmup_requests: int = 200_000  # cached mode, concurrent, not measured
    warmup_concurrency: int = 16
    settle_requests: int = 500  # read-only, every mode, just before the measured phase
    requests: int = 30_000  # measured, cached mode (and every other mode unless below)
    uncached_requests: int | None = 10_000  # measured, modes without a cache (None: requests)
    rounds: int = 10
    messages_per_conversation: int = 6
    modes: tuple[Mode, ...] = ("cached", "uncached")
    local_tier: bool = True  # the cached mode's in-process tier, as the settings have it
    user_ttl: float | None = None  # profile and conversation TTLs (None: the settings' own)
    seed: int = 1


# --- the cache stand-in of the uncached mode ----------------------------------------------


class PassThroughCache:
    """Caching off: what the services do without a cache. Every read calls its loader,
    nothing is stored, invalidations have nothing to drop. A :class:`~ogcache.cache.CacheLike`
    (what the services take), each call one Python call deep."""

    prefix = "none"

    async def get_or_load(
        self,
        namespace: Namespace[Any],
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
    ) -> T:
        return await loader()

    async def get_or_load_encoded(
        self,
        namespace: Namespace[Any],
        key: str,
        loader: Callable[[], Awaitable[Any]],
        *,
        ttl: float | None = None,
    ) -> bytes | None:
        value = await loader()
        return None if value is None else namespace.codec.dumps(value)

    async def get_local(self, namespace: Namespace[Any], key: str) -> Any:
        return MISSING

    async def get_local_encoded(self, namespace: Namespace[Any], key: str) -> Any:
        return MISSING

    async def refresh(
        self,
        namespace: Namespace[Any],
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
    ) -> T:
        return await loader()

    async def update(
        self,
        namespace: Namespace[T],
        key: str,
        change: Callable[[T | None], T | None],
        ttl: float | None = None,
    ) -> T | None:
        return change(None)  # nothing is stored: every update starts from nothing

    async def get(self, namespace: Namespace[Any], key: str) -> Any:
        return MISSING

    async def get_entries(self, entries: Sequence[tuple[Namespace[Any], str]]) -> list[Any]:
        return [MISSING] * len(entries)

    async def peek(self, entries: Sequence[tuple[Namespace[Any], str]]) -> list[Any]:
        return [MISSING] * len(entries)

    async def get_many(self, namespace: Namespace[Any], keys: Sequence[str]) -> dict[str, Any]:
        return {}

    async def set(self, namespace: Namespace[Any], key: str, value: Any, ttl: Any = None) -> bool:
        return False

    async def set_many(
        self, namespace: Namespace[Any], values: Mapping[str, Any], ttl: Any = None
    ) -> bool:
        return False

    async def delete(self, namespace: Namespace[Any], key: str) -> bool:
        return True

    async def delete_many(self, namespace: Namespace[Any], keys: Iterable[str]) -> bool:
        return True

    async def invalidate(self, entries: Iterable[tuple[Namespace[Any], str]]) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {}

    def reset_stats(self) -> None:
        pass

    async def close(self) -> None:
        pass


# --- the plan -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One request: the user (0 is the most popular) and what the request does."""

    user: int
    kind: str  # "read" or one of WRITE_KINDS
    recent: bool = False
    concentrates: bool = False


def make_plan(config: WorkloadConfig, count: int, rng: Any) -> list[Step]:
    weights = list(
        itertools.accumulate(1.0 / (rank**config.zipf_s) for rank in range(1, config.users + 1))
    )
    users = rng.choices(range(config.users), cum_weights=weights, k=count)
    steps = []
    for user in users:
        if rng.random() < config.write_fraction:
            kind = rng.choices(WRITE_KINDS, weights=WRITE_MIX)[0]
            steps.append(Step(user, kind))
        else:
            steps.append(
                Step(
                    user,
                    "read",
                    recent=rng.random() < config.recent_fraction,
                    concentrates=rng.random() < config.concentrates_fraction,
                )
            )
    return steps


# --- population -----------------------------------------------------------------------------


@dataclass(slots=True)
class Population:
    """The seeded users as the simulated clients know them (index = popularity rank)."""

    user_ids: list[str]
    conversation_ids: list[uuid.UUID]
    tokens: list[str]

    def copy(self) -> Population:
        return Population(list(self.user_ids), list(self.conversation_ids), list(self.tokens))


def _sign(user_id: str, session_id: uuid.UUID, secret: str, now: datetime) -> str:
    # The claims of AuthService.issue_token; every run verifies them through the service.
    claims: dict[str, str | int] = {
        "sub": user_id,
        "session_id": str(session_id),
        "role": AUDIENCE,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": int(now.timestamp()),
        "exp": int((now + TOKEN_LIFETIME).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


async def seed_population(runtime: Runtime, config: WorkloadConfig, secret: str) -> Population:
    """Insert the users, their sessions and conversations in bulk; sign their tokens."""
    now = utc_now()
    user_ids = [f"bench_user_{index:05d}" for index in range(config.users)]
    profile_ids = [uuid.uuid4() for _ in user_ids]
    conversation_ids = [uuid.uuid4() for _ in user_ids]
    session_ids = [uuid.uuid4() for _ in user_ids]
    count = config.messages_per_conversation
    started = now - timedelta(hours=1)
    messages = [
        {
            "conversation_id": cid,
            "seq": n + 1,
            "role": "user" if n % 2 == 0 else "assistant",
            "content": _MESSAGES[n % len(_MESSAGES)],
            "created_at": started + timedelta(minutes=n),
        }
        for cid in conversation_ids
        for n in range(count)
    ]
    profiles = [
        {
            "id": pid,
            "user_id": uid,
            "telegram_user_id": None,
            "created_at": now - timedelta(days=30),
            "updated_at": now,
            "first_visit": now - timedelta(days=30),
            "last_visit": now,
            "total_conversations": 1,
            "total_messages": count,
            "total_orders": 0,
            "total_spent": 0,
            "preferences": {"language": "en", "favorite_type": "hybrid"},
            "loyalty_points": 0,
            "is_active": True,
            "is_blocked": False,
        }
        for uid, pid in zip(user_ids, profile_ids, strict=True)
    ]
    conversations = [
        {
            "id": cid,
            "user_profile_id": pid,
            "channel": "web",
            "language": "en",
            "started_at": started,
            "last_message_at": started + timedelta(minutes=count),
            "message_count": count,
        }
        for cid, pid in zip(conversation_ids, profile_ids, strict=True)
    ]
    sessions = [
        {"id": sid, "user_id": uid, "created_at": now}
        for sid, uid in zip(session_ids, user_ids, strict=True)
    ]
    async with runtime.db.begin() as session:
        for table, rows in (
            (UserProfile, profiles),
            (Conversation, conversations),
            (ConversationMessage, messages),
            (AuthSession, sessions),
        ):
            for start in range(0, len(rows), 2000):
                await session.execute(insert(table), rows[start : start + 2000])
    tokens = [_sign(uid, sid, secret, now) for uid, sid in zip(user_ids, session_ids, strict=True)]
    return Population(user_ids, conversation_ids, tokens)


# --- one mode's services ----------------------------------------------------------------------


class QueryCounter:
    """Statements sent to the database by one engine."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *_args: Any) -> None:
        self.count += 1


@dataclass(slots=True)
class Services:
    mode: Mode
    runtime: Runtime
    auth: AuthService
    profiles: ProfileService
    conversations: ConversationService
    menu: MenuService
    queries: QueryCounter

    @classmethod
    def open(cls, mode: Mode, settings: Settings) -> Services:
        runtime = Runtime.open(settings)
        counter = QueryCounter()
        event.listen(runtime.engine.sync_engine, "before_cursor_execute", counter)
        if mode == "uncached":
            secret = settings.jwt_secret
            assert secret is not None
            context = ServiceContext(
                db=runtime.db,
                cache=PassThroughCache(),
                namespaces=runtime.namespaces,
            )
            return cls(
                mode,
                runtime,
                AuthService(
                    context, secret=secret.get_secret_value(), token_ttl=settings.token_ttl
                ),
                ProfileService(context),
                ConversationService(context),
                MenuService(context),
                counter,
            )
        return cls(
            mode,
            runtime,
            runtime.auth,
            runtime.profiles,
            runtime.conversations,
            runtime.menu,
            counter,
        )

    async def close(self) -> None:
        await self.runtime.close()


# --- recording ----------------------------------------------------------------------------


@dataclass(slots=True)
class OpRecord:
    seconds: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    first_time: int = 0  # reads of a key no earlier request read
    # Reads that ran statements, by cause (see Recorder.call).
    missed_first: int = 0
    missed_after_write: int = 0
    missed_expired: int = 0

    def add(self, seconds: float, queries: int) -> None:
        self.seconds.append(seconds)
        self.queries.append(queries)


@dataclass(frozen=True, slots=True)
class OpSummary:
    """One operation in one mode; latencies in milliseconds."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    queries_per_call: float | None
    without_db: float | None  # fraction of calls that ran no statement
    first_time: int

    @classmethod
    def of(cls, record: OpRecord) -> OpSummary:
        ordered = sorted(record.seconds)
        count = len(ordered)

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return cls(
            count=count,
            p50_ms=ms(quantile(ordered, 0.5)),
            p99_ms=ms(quantile(ordered, 0.99)),
            mean_ms=ms(sum(ordered) / count) if count else None,
            queries_per_call=round(sum(record.queries) / count, 4) if count else None,
            without_db=round(record.queries.count(0) / count, 5) if count else None,
            first_time=record.first_time,
        )


class Recorder:
    """Latency and statements of every call of one mode, and the keys read so far."""

    def __init__(self, services: Services, seen: set[tuple[str, Any]] | None = None) -> None:
        self.services = services
        self.ops: dict[str, OpRecord] = {}
        self.seen = seen if seen is not None else set()
        self.written: set[tuple[str, Any]] = set()  # keys a write invalidated, not read since
        self.measuring = False

    async def call(self, op: str, work: Awaitable[T], key: Any = None) -> T:
        """Time ``work`` and count its statements. A read (``key`` given) that ran statements
        is put down to its cause: the key's first read in the run; a write of the key since
        its last read (a login's new token counts as one); or else the entry's expiry."""
        queries = self.services.queries
        before = queries.count
        start = time.perf_counter()
        result = await work
        elapsed = time.perf_counter() - start
        ran = queries.count - before
        first = key is not None and (op, key) not in self.seen
        if first:
            self.seen.add((op, key))
        if self.measuring:
            record = self.ops.get(op)
            if record is None:
                record = self.ops[op] = OpRecord()
            record.add(elapsed, ran)
            record.first_time += first
            if key is not None and ran:
                if first:
                    record.missed_first += 1
                elif (op, key) in self.written:
                    record.missed_after_write += 1
                else:
                    record.missed_expired += 1
        if key is not None:
            self.written.discard((op, key))
        return result

    def wrote(self, user: int, *ops: str) -> None:
        self.written.update((op, user) for op in ops)


async def run_step(recorder: Recorder, people: Population, step: Step) -> None:
    """One request of the plan, through the mode's services."""
    svc = recorder.services
    user = step.user
    uid = people.user_ids[user]
    call = recorder.call
    start = time.perf_counter()
    before = svc.queries.count
    await call("auth", svc.auth.verify(people.tokens[user]), key=user)
    if step.kind == "read":
        await call("profile", svc.profiles.get(uid), key=user)
        if step.recent:
            await call("recent", svc.conversations.recent(uid), key=user)
        await call("conversation", svc.conversations.get(people.conversation_ids[user]), key=user)
        await call("menu", svc.menu.get_menu(step.concentrates), key=step.concentrates)
        op = "read request"
    elif step.kind == "add_message":
        content = f"{_MESSAGES[user % len(_MESSAGES)]} ({uuid.uuid4().hex[:6]})"
        await call(
            "add_message",
            svc.conversations.add_message(
                people.conversation_ids[user], MessageCreate(role="user", content=content)
            ),
        )
        recorder.wrote(user, "conversation", "recent", "profile")
        op = "write request"
    elif step.kind == "update_profile":
        changes = ProfileUpdate(preferences={"last_topic": uuid.uuid4().hex[:8]})
        await call("update_profile", svc.profiles.update(uid, changes))
        recorder.wrote(user, "profile")
        op = "write request"
    else:
        await call("relogin", _relogin(svc, people, user))
        recorder.wrote(user, "auth")
        op = "write request"
    if recorder.measuring:
        record = recorder.ops.get(op)
        if record is None:
            record = recorder.ops[op] = OpRecord()
        record.add(time.perf_counter() - start, svc.queries.count - before)


async def _relogin(svc: Services, people: Population, user: int) -> None:
    token = people.tokens[user]
    await svc.auth.logout(token)
    people.tokens[user] = (await svc.auth.issue_token(people.user_ids[user])).access_token


async def run_concurrently(
    recorder: Recorder, people: Population, steps: Sequence[Step], concurrency: int
) -> int:
    """Run ``steps`` with ``concurrency`` clients; the requests refused because another
    client had just logged the same user out (only the warm-up is concurrent)."""
    queue = iter(steps)
    refused = 0

    async def client() -> None:
        nonlocal refused
        for step in queue:
            try:
                await run_step(recorder, people, step)
            except AuthenticationError:
                refused += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return refused


# --- the run ------------------------------------------------------------------------------


@dataclass
class WorkloadResult:
    config: dict[str, Any]
    modes: list[str]
    measured_requests: dict[str, int]
    ops: dict[str, dict[str, OpSummary]]  # mode -> op -> summary
    reads_without_db: dict[str, float | None]  # mode -> over every read call
    read_requests_without_db: dict[str, float | None]
    queries_per_read_request: dict[str, float | None]
    query_reduction: float | None  # 1 - cached / uncached, per read request
    first_time_reads: int
    reads_measured: int
    first_time_fraction: float | None
    # Reads of the cached mode that ran statements, by cause: first read of the key, a write
    # of the key since its last read, neither (the entry expired: its TTL passed).
    read_misses: dict[str, int]
    # 1 - (first-time + after-write misses) / reads: what an entry that never expired would
    # have given, the delete-on-write cache's own figure (its ceiling is 1 - writes / reads).
    reads_without_db_no_expiry: float | None
    # Measured requests of the cached mode per second of the measured phase's wall-clock time
    # (all modes' rounds): the traffic rate its TTLs saw.
    cached_rate: float | None
    warmup_first_time_reads: int
    warmup_refused: int
    cache_stats: dict[str, dict[str, Any]]  # cached mode, measured phase, per namespace
    local_hits: int | None
    seconds: dict[str, float]
    checks: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _settings(
    database_url: str, redis_url: str | None, secret: str, prefix: str, **more: Any
) -> Settings:
    return load_settings(
        _env_file=None,
        database_url=database_url,
        redis_url=redis_url,
        jwt_secret=secret,
        cache_prefix=prefix,
        log_level="WARNING",
        auto_migrate=False,
        refresh_interval=0,
        # Each user appends to one conversation for the whole run (the hottest user thousands
        # of times): the storage limits are not what this measures.
        max_messages_per_conversation=1_000_000,
        max_messages_per_user=10_000_000,
        **more,
    )


async def _copy_database(server_url: str, source: str, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def _redis(redis_url: str | None) -> Any:
    """The given Redis, or a redis-server of this run's own on a free loopback port."""
    if redis_url is not None:
        yield redis_url
        return
    with tempfile.TemporaryDirectory(prefix="ogcache-workload-") as directory:
        server = await asyncio.to_thread(RedisProcess(free_port(), Path(directory)).start)
        try:
            yield server.url
        finally:
            await asyncio.to_thread(server.stop)


async def run_workload(
    config: WorkloadConfig,
    *,
    database_url: str,
    redis_url: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> WorkloadResult:
    """Seed, warm up, measure every mode (see the module's docstring); nothing is asserted.

    ``database_url``: any database on the PostgreSQL server to use (the run creates its own
    and drops them). ``redis_url``: a Redis to use under a key prefix of the run's own
    (removed afterwards); ``None`` starts a redis-server of the run's own.
    """
    say = progress or (lambda _message: None)
    began = time.monotonic()
    secret = secrets.token_urlsafe(48)
    prefix = f"workload-{uuid.uuid4().hex[:10]}"
    names = {mode: unique_name(f"workload_{mode}") for mode in config.modes}
    source = names.get("cached") or next(iter(names.values()))
    seconds: dict[str, float] = {}
    quiet = logging.getLogger("ogcache")  # the degraded mode's breaker warns; expected here
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    created: list[str] = []
    try:
        async with _redis(redis_url) as cache_url:
            db = {source: await create_database(database_url, source)}
            created.append(source)

            def settings_for(mode: Mode) -> Settings:
                redis = {
                    "cached": cache_url,
                    "uncached": None,
                    "degraded": f"redis://127.0.0.1:{free_port()}/0",
                }[mode]
                more: dict[str, Any] = {} if config.local_tier else {"local_ttl_menu": 0}
                if config.user_ttl is not None:
                    more |= {"ttl_profile": config.user_ttl, "ttl_conversation": config.user_ttl}
                return _settings(db[names[mode]], redis, secret, prefix, **more)

            say(f"seeding {config.users:,} users")
            first_mode = "cached" if "cached" in config.modes else config.modes[0]
            services = Services.open(first_mode, settings_for(first_mode))
            try:
                await services.runtime.migrate()
                await seed_demo_data(services.runtime.db)
                people = await seed_population(services.runtime, config, secret)
                seconds["seed"] = round(time.monotonic() - began, 1)

                rng = random.Random(config.seed)
                warm_steps = make_plan(config, config.warmup_requests, rng)
                say(
                    f"warm-up: {config.warmup_requests:,} requests, {first_mode}, "
                    f"{config.warmup_concurrency} clients"
                )
                t0 = time.monotonic()
                warm = Recorder(services)
                refused = await run_concurrently(
                    warm, people, warm_steps, config.warmup_concurrency
                )
                seconds["warmup"] = round(time.monotonic() - t0, 1)
                warmup_first_time = len(warm.seen)
                seen = warm.seen
            finally:
                await services.close()

            for mode in config.modes:
                if names[mode] != source:
                    await _copy_database(database_url, source, names[mode])
                    created.append(names[mode])
                    db[names[mode]] = asyncpg_dsn(_with_database(db[source], names[mode]))

            measured_steps = make_plan(config, config.requests, rng)
            settle_steps = [
                s for s in make_plan(config, config.settle_requests * 2, rng) if s.kind == "read"
            ][: config.settle_requests]
            opened = {mode: Services.open(mode, settings_for(mode)) for mode in config.modes}
            try:
                recorders: dict[str, Recorder] = {
                    mode: Recorder(svc, seen if mode == "cached" else None)
                    for mode, svc in opened.items()
                }
                states = {mode: people.copy() for mode in config.modes}
                say(f"settle: {len(settle_steps)} reads in every mode")
                for mode in config.modes:
                    for step in settle_steps:
                        await run_step(recorders[mode], states[mode], step)
                if "cached" in opened:
                    opened["cached"].runtime.cache.reset_stats()
                counts = {
                    mode: config.requests
                    if mode == "cached" or config.uncached_requests is None
                    else min(config.requests, config.uncached_requests)
                    for mode in config.modes
                }
                chunk = {mode: max(1, counts[mode] // config.rounds) for mode in config.modes}
                size = max(1, config.requests // config.rounds)
                measured: dict[str, int] = dict.fromkeys(config.modes, 0)
                timed = dict.fromkeys(config.modes, 0.0)
                measured_from = time.monotonic()
                for round_index in range(config.rounds):
                    base = round_index * size
                    order = list(config.modes)
                    if round_index % 2:
                        order.reverse()
                    say(f"round {round_index + 1}/{config.rounds}")
                    for mode in order:
                        recorder = recorders[mode]
                        recorder.measuring = True
                        steps = measured_steps[base : base + min(size, chunk[mode])]
                        t0 = time.monotonic()
                        for step in steps:
                            await run_step(recorder, states[mode], step)
                        timed[mode] += time.monotonic() - t0
                        recorder.measuring = False
                        measured[mode] += len(steps)
                cache_stats: dict[str, dict[str, Any]] = {}
                local_hits: int | None = None
                if "cached" in opened:
                    for name, snapshot in opened["cached"].runtime.cache.stats().items():
                        stats = asdict(snapshot)
                        cache_stats[name] = {
                            k: v for k, v in stats.items() if isinstance(v, int | float)
                        }
                        if "local_hits" in stats:
                            local_hits = (local_hits or 0) + int(stats["local_hits"])
                    await opened["cached"].runtime.cache.clear()
            finally:
                for svc in opened.values():
                    await svc.close()
            seconds["measured_wall"] = round(time.monotonic() - measured_from, 1)
            for mode in config.modes:
                seconds[f"measured_{mode}"] = round(timed[mode], 1)
    finally:
        quiet.setLevel(level)
        for name in created:
            await drop_database(database_url, name)
    seconds["total"] = round(time.monotonic() - began, 1)
    return _summarize(
        config,
        recorders,
        measured,
        warmup_first_time=warmup_first_time,
        warmup_refused=refused,
        cache_stats=cache_stats,
        local_hits=local_hits,
        seconds=seconds,
    )


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _summarize(
    config: WorkloadConfig,
    recorders: Mapping[str, Recorder],
    measured: Mapping[str, int],
    *,
    warmup_first_time: int,
    warmup_refused: int,
    cache_stats: dict[str, dict[str, Any]],
    local_hits: int | None,
    seconds: dict[str, float],
) -> WorkloadResult:
    ops = {
        mode: {op: OpSummary.of(record) for op, record in recorder.ops.items()}
        for mode, recorder in recorders.items()
    }

    def read_calls(mode: str) -> list[int]:
        ops_of = recorders[mode].ops
        return [q for op in READ_OPS if op in ops_of for q in ops_of[op].queries]

    reads_without_db: dict[str, float | None] = {}
    requests_without_db: dict[str, float | None] = {}
    per_request: dict[str, float | None] = {}
    for mode in recorders:
        calls = read_calls(mode)
        reads_without_db[mode] = round(calls.count(0) / len(calls), 5) if calls else None
        request = ops[mode].get("read request")
        requests_without_db[mode] = request.without_db if request else None
        per_request[mode] = request.queries_per_call if request else None
    reduction = None
    cached_q, uncached_q = per_request.get("cached"), per_request.get("uncached")
    if cached_q is not None and uncached_q:
        reduction = round(1 - cached_q / uncached_q, 4)
    cached = recorders.get("cached")
    first_time = (
        sum(record.first_time for op, record in cached.ops.items() if op in READ_OPS)
        if cached
        else 0
    )
    reads = len(read_calls("cached")) if cached else 0
    misses = {"first_time": 0, "after_write": 0, "expired": 0}
    for op, record in cached.ops.items() if cached else ():
        if op in READ_OPS:
            misses["first_time"] += record.missed_first
            misses["after_write"] += record.missed_after_write
            misses["expired"] += record.missed_expired
    wall = seconds.get("measured_wall")
    result = WorkloadResult(
        config=asdict(config),
        modes=list(recorders),
        measured_requests=dict(measured),
        ops=ops,
        reads_without_db=reads_without_db,
        read_requests_without_db=requests_without_db,
        queries_per_read_request=per_request,
        query_reduction=reduction,
        first_time_reads=first_time,
        reads_measured=reads,
        first_time_fraction=round(first_time / reads, 5) if reads else None,
        read_misses=misses,
        reads_without_db_no_expiry=(
            round(1 - (misses["first_time"] + misses["after_write"]) / reads, 5) if reads else None
        ),
        cached_rate=round(measured["cached"] / wall, 1) if cached and wall else None,
        warmup_first_time_reads=warmup_first_time,
        warmup_refused=warmup_refused,
        cache_stats=cache_stats,
        local_hits=local_hits,
        seconds=seconds,
    )
    if cached is not None:
        without_db = reads_without_db["cached"] or 0.0
        result.checks = {
            "first_time_reads_below_1pct": (result.first_time_fraction or 0.0) < MAX_FIRST_TIME,
            "reads_without_db_at_least_96pct": without_db >= TARGET_READS_WITHOUT_DB,
            "reads_without_db_no_expiry_at_least_96pct": (result.reads_without_db_no_expiry or 0.0)
            >= TARGET_READS_WITHOUT_DB,
        }
    return result


# --- report ---------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ratio(before: float | None, after: float | None) -> str:
    return "-" if not before or not after else f"{before / after:.1f}x"


def format_report(result: WorkloadResult) -> str:
    config = result.config
    modes = result.modes
    other = next((m for m in modes if m != "cached"), None)
    lines = [
        f"{config['users']:,} users, Zipf s={config['zipf_s']:g}, "
        f"{100 * config['write_fraction']:g}% writes; warm-up {config['warmup_requests']:,} "
        f"requests; measured: "
        + ", ".join(f"{m} {n:,} requests" for m, n in result.measured_requests.items())
        + f" in {config['rounds']} alternating rounds, one request at a time. "
        "Latencies in ms; q/call: database statements per call; no-DB: calls that ran none.",
    ]
    header = f"{'operation':<15}"
    for mode in modes:
        header += f" | {mode + ' p50':>12} {'p99':>7} {'q/call':>6} {'no-DB':>6}"
    if other and "cached" in modes:
        header += f" | {'p50 ' + other[:3] + '/cac':>11} {'p99':>6}"
    lines += [header, "-" * len(header)]
    names = [*READ_OPS, "read request", *WRITE_KINDS, "write request"]
    for op in names:
        if not any(op in result.ops[m] for m in modes):
            continue
        line = f"{op:<15}"
        for mode in modes:
            s = result.ops[mode].get(op)
            if s is None:
                line += f" | {'-':>12} {'-':>7} {'-':>6} {'-':>6}"
                continue
            line += (
                f" | {_ms(s.p50_ms):>12} {_ms(s.p99_ms):>7} "
                f"{s.queries_per_call:>6.2f} {_pct(s.without_db):>6}"
            )
        if other and "cached" in modes:
            c, o = result.ops["cached"].get(op), result.ops[other].get(op)
            if c is None or o is None:
                line += f" | {'-':>11} {'-':>6}"
            else:
                line += f" | {_ratio(o.p50_ms, c.p50_ms):>11} {_ratio(o.p99_ms, c.p99_ms):>6}"
        lines.append(line)
    if "cached" in modes:
        lines.append("")
        lines.append(
            f"reads served without the database (cached): "
            f"{_pct(result.reads_without_db['cached'])} of {result.reads_measured:,} read calls; "
            f"read requests: {_pct(result.read_requests_without_db['cached'])}"
        )
        lines.append(
            f"first-time reads (a key no earlier request read): {result.first_time_reads:,} "
            f"= {_pct(result.first_time_fraction)} of the measured reads "
            f"({result.warmup_first_time_reads:,} during the warm-up)"
        )
        m = result.read_misses
        ttl = config["user_ttl"] or Settings.model_fields["ttl_profile"].default
        lines.append(
            f"read calls that ran statements: {m['first_time']:,} first reads of their key, "
            f"{m['after_write']:,} after a write of their key, {m['expired']:,} after their "
            f"entry expired; without the expiries: {_pct(result.reads_without_db_no_expiry)} "
            f"without the database. Traffic the TTLs saw: {result.cached_rate or 0:,.0f} "
            f"requests/s ({(result.cached_rate or 0) * ttl:,.0f} per profile TTL of {ttl:g} s)"
        )
        if other:
            lines.append(
                "statements per read request: "
                + ", ".join(
                    f"{m} {result.queries_per_read_request[m]:.3f}"
                    for m in modes
                    if result.queries_per_read_request[m] is not None
                )
                + f" -> {_pct(result.query_reduction)} fewer with the cache (seed: 70% fewer)"
            )
        hits = {
            name: (s.get("hits", 0), s.get("misses", 0)) for name, s in result.cache_stats.items()
        }
        lines.append(
            "cache hit rate by namespace (measured phase): "
            + ", ".join(
                f"{name} {_pct(h / (h + m) if h + m else None)}"
                for name, (h, m) in hits.items()
                if h + m
            )
            + (
                f"; in-process tier hits: {result.local_hits:,}"
                if result.local_hits is not None
                else ""
            )
        )
    return "\n".join(lines)


# --- command --------------------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    defaults = WorkloadConfig()
    parser = commands.add_parser(
        "workload",
        help="Zipf chat workload through the real services, with the cache and without",
    )
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--zipf", type=float, default=defaults.zipf_s, help="Zipf exponent s")
    parser.add_argument("--write-fraction", type=float, default=defaults.write_fraction)
    parser.add_argument("--warmup", type=int, default=defaults.warmup_requests, help="requests")
    parser.add_argument("--warmup-concurrency", type=int, default=defaults.warmup_concurrency)
    parser.add_argument(
        "--requests", type=int, default=defaults.requests, help="measured, cached mode"
    )
    parser.add_argument(
        "--uncached-requests",
        type=int,
        default=defaults.uncached_requests,
        help="measured, modes without a cache",
    )
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument(
        "--modes",
        default=",".join(defaults.modes),
        help=f"comma-separated, of {', '.join(MODES)}",
    )
    parser.add_argument(
        "--redis-url", default=None, help="a Redis to use (default: a redis-server of its own)"
    )
    parser.add_argument(
        "--no-l1",
        action="store_true",
        help="cached mode without the menu's in-process tier (OGCACHE_LOCAL_TTL_MENU=0)",
    )
    parser.add_argument(
        "--ttl",
        type=float,
        default=None,
        help="seconds: OGCACHE_TTL_PROFILE and OGCACHE_TTL_CONVERSATION (default: theirs)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--output", default=None, help="default bench/results/workload.json")


def command(args: Any, database_url: str, results: Path) -> int:
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        print(f"unknown mode {', '.join(sorted(unknown))}: choose from {', '.join(MODES)}")
        return 2
    config = WorkloadConfig(
        users=args.users,
        zipf_s=args.zipf,
        write_fraction=args.write_fraction,
        warmup_requests=args.warmup,
        warmup_concurrency=args.warmup_concurrency,
        requests=args.requests,
        uncached_requests=args.uncached_requests,
        rounds=args.rounds,
        modes=cast(tuple[Mode, ...], modes),
        local_tier=not args.no_l1,
        user_ttl=args.ttl,
        seed=args.seed,
    )
    load_before = os.getloadavg()
    result = asyncio.run(
        run_workload(
            config,
            database_url=database_url,
            redis_url=args.redis_url,
            progress=lambda message: print(message, flush=True),
        )
    )
    print()
    print(format_report(result))
    from bench.http_load import seed_comparison

    print()
    print(seed_comparison(result.as_dict(), None))
    print()
    for check, passed in result.checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench workload " + " ".join(sys.argv[2:]),
        "machine": machine(load_before),
        "redis": args.redis_url or "own redis-server",
        **result.as_dict(),
    }
    output = Path(args.output) if args.output else results / "workload.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {output} ({result.seconds['total']} s)")
    return 0 if all(result.checks.values()) else 1
