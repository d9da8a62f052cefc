"""With Redis down, hung or unreachable, the whole application only gets slower.

Each test runs the application on the shared PostgreSQL database and a redis-server of its
own (never the shared one), warms the cache, takes that Redis away, and checks that every
service still returns what the database holds, within a bound, counting the cache errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from redis import Redis

from ogcache.db.seed import seed_demo_data
from ogcache.errors import AuthenticationError, NotFoundError, UnavailableError
from ogcache.runtime import Runtime
from ogcache.schemas import ConversationCreate, MessageCreate, ProfileUpdate
from tests.services.conftest import make_settings
from tests.support.databases import empty_all_tables
from tests.support.servers import RedisProcess, free_port

pytestmark = pytest.mark.slow

T = TypeVar("T")

BOUND = 1.5  # seconds any one call may take while the cache is unavailable


async def bounded(call: Awaitable[T]) -> T:
    start = time.perf_counter()
    result = await call
    elapsed = time.perf_counter() - start
    assert elapsed < BOUND, f"call took {elapsed:.2f} s with the cache unavailable"
    return result


@contextmanager
def within_bound() -> Iterator[None]:
    """Like :func:`bounded` for a block whose call is expected to raise."""
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    assert elapsed < BOUND, f"call took {elapsed:.2f} s with the cache unavailable"


async def open_app(database_url: str, redis_url: str) -> Runtime:
    settings = make_settings(database_url, redis_url, cache_timeout=0.2, cache_connect_timeout=0.2)
    app = Runtime.open(settings)
    await seed_demo_data(app.db)
    return app


@pytest.fixture
async def app(postgres_database: str, own_redis: RedisProcess) -> AsyncIterator[Runtime]:
    """The application over the shared database and this test's own Redis, with demo data."""
    runtime = await open_app(postgres_database, own_redis.url)
    yield runtime
    await empty_all_tables(runtime.engine)
    await runtime.close()  # the keys die with this test's redis-server


# --- Redis stopped after the cache was warm -------------------------------------------------


async def test_profiles_work_with_redis_down(app: Runtime, own_redis: RedisProcess) -> None:
    alice = await app.profiles.get("web_demo_alice")
    dima = await app.profiles.get_by_telegram(100000001)
    assert alice is not None
    assert dima is not None
    own_redis.stop()

    assert await bounded(app.profiles.get("web_demo_alice")) == alice
    assert await bounded(app.profiles.get_by_telegram(100000001)) == dima
    assert await bounded(app.profiles.get_or_create(user_id="web_demo_alice")) == alice
    created = await bounded(app.profiles.get_or_create(user_id="web_outage", telegram_user_id=55))
    assert created.user_id == "web_outage"
    assert await bounded(app.profiles.get("web_outage")) == created
    assert await bounded(app.profiles.get_by_telegram(55)) == created

    updated = await bounded(
        app.profiles.update("web_demo_alice", ProfileUpdate(loyalty_points=4242))
    )
    assert updated.loyalty_points == 4242
    assert await bounded(app.profiles.get("web_demo_alice")) == updated

    stats = app.cache.stats()
    assert stats["user:profile"].errors > 0
    assert stats["user:telegram"].errors > 0


async def test_conversations_work_with_redis_down(app: Runtime, own_redis: RedisProcess) -> None:
    recent = await app.conversations.recent("web_demo_alice")
    assert recent
    old = await app.conversations.get(recent[0].id)
    assert old is not None
    own_redis.stop()

    assert await bounded(app.conversations.get(old.id)) == old
    assert await bounded(app.conversations.recent("web_demo_alice")) == recent
    created = await bounded(
        app.conversations.create(ConversationCreate(user_id="web_demo_alice", channel="web"))
    )
    added = await bounded(
        app.conversations.add_message(created.id, MessageCreate(role="user", content="hi"))
    )
    assert [message.content for message in added.messages] == ["hi"]
    assert await bounded(app.conversations.get(created.id)) == added
    assert (await bounded(app.conversations.recent("web_demo_alice")))[0].id == created.id
    profile = await bounded(app.profiles.get("web_demo_alice"))
    assert profile is not None
    assert profile.total_messages == sum(c.message_count for c in recent) + 1

    assert app.cache.stats()["conversation"].errors > 0


async def test_menu_works_with_redis_down(app: Runtime, own_redis: RedisProcess) -> None:
    menus = {flag: await app.menu.get_menu(flag) for flag in (False, True)}
    texts = {flag: await app.menu.get_context(flag) for flag in (False, True)}
    assert menus[False].items
    assert len(menus[True].items) > len(menus[False].items)
    own_redis.stop()

    for flag in (False, True):
        assert (await bounded(app.menu.get_menu(flag))).items == menus[flag].items
        assert await bounded(app.menu.get_context(flag)) == texts[flag]

    stats = app.cache.stats()
    assert stats["menu"].errors > 0
    assert stats["menu:context"].errors > 0


async def test_auth_works_with_redis_down_and_logout_still_ends_tokens(
    app: Runtime, own_redis: RedisProcess
) -> None:
    before = await app.auth.issue_token("web_demo_alice")
    identity = await app.auth.verify(before.access_token)
    await app.auth.verify(before.access_token)  # cached
    own_redis.stop()

    assert await bounded(app.auth.verify(before.access_token)) == identity
    during = await bounded(app.auth.issue_token("tg_100000001"))
    assert (await bounded(app.auth.verify(during.access_token))).user_id == "tg_100000001"

    for token in (before.access_token, during.access_token):
        await bounded(app.auth.logout(token))
        with pytest.raises(AuthenticationError, match="revoked"):
            await bounded(app.auth.verify(token))

    stats = app.cache.stats()
    assert stats["auth:token"].errors > 0
    assert stats["auth:session"].errors > 0


async def test_blocking_still_ends_tokens_with_redis_down(
    app: Runtime, own_redis: RedisProcess
) -> None:
    issued = await app.auth.issue_token("web_demo_alice")
    await app.auth.verify(issued.access_token)
    own_redis.stop()

    await bounded(app.profiles.update("web_demo_alice", ProfileUpdate(is_blocked=True)))
    with pytest.raises(AuthenticationError, match="blocked"):
        await bounded(app.auth.verify(issued.access_token))


async def test_analytics_work_with_redis_down(app: Runtime, own_redis: RedisProcess) -> None:
    today = await app.analytics.today()
    top = await app.analytics.top_products()
    assert today.events_total > 0
    assert top
    own_redis.stop()

    assert await bounded(app.analytics.today()) == today
    assert await bounded(app.analytics.top_products()) == top
    await bounded(app.analytics.record_event("order_created", {"product": top[-1].product}))
    after = await bounded(app.analytics.today())
    assert after.events_total == today.events_total + 1
    assert after.orders_created == today.orders_created + 1

    assert app.cache.stats()["analytics:today"].errors > 0


async def test_cache_errors_are_counted_and_reported(app: Runtime, own_redis: RedisProcess) -> None:
    await app.profiles.get("web_demo_alice")
    own_redis.stop()
    app.cache.reset_stats()

    for _ in range(3):
        await bounded(app.profiles.get("web_demo_alice"))
    stats = app.cache.stats()["user:profile"]
    # Each read: the lookup fails; the loaded value is not written to an unreachable cache.
    assert (stats.errors, stats.misses, stats.loads, stats.hits, stats.sets) == (3, 3, 3, 0, 0)

    report = await bounded(app.cache.report())
    assert report.available is False
    assert report.error
    assert report.namespaces["user:profile"].errors == 3


async def test_cache_only_sessions_report_unavailability(
    app: Runtime, own_redis: RedisProcess
) -> None:
    stored = await app.sessions.set("chat-session-1", {"step": 1}, owner="web_demo_alice")
    assert stored.data == {"step": 1}
    assert await app.sessions.get("chat-session-1", owner="web_demo_alice") == stored
    own_redis.stop()
    app.cache.reset_stats()

    assert await bounded(app.sessions.get("chat-session-1", owner="web_demo_alice")) is None
    with within_bound(), pytest.raises(UnavailableError, match="unreachable"):
        await app.sessions.set("chat-session-1", {"step": 2})
    with within_bound(), pytest.raises(UnavailableError, match="unreachable"):
        await app.sessions.set("chat-session-2", {"step": 1}, owner="web_demo_alice")
    with within_bound(), pytest.raises(UnavailableError, match="unreachable"):
        await app.sessions.delete("chat-session-1")
    # update_field reads first and cannot tell an unreachable cache from an absent session,
    # so it may report either; what matters is that it fails within the bound, writing nothing.
    with within_bound(), pytest.raises((NotFoundError, UnavailableError)):
        await app.sessions.update_field("chat-session-1", "step", 3)

    stats = app.cache.stats()
    # Writes fail at the per-owner index (session:index) before the session itself.
    assert stats["session"].errors + stats["session:index"].errors >= 5
    assert stats["session"].sets == stats["session:index"].sets == 0


# --- Redis hung, or never there -------------------------------------------------------------


async def test_a_hung_redis_only_slows_each_call_down(
    app: Runtime, own_redis: RedisProcess
) -> None:
    issued = await app.auth.issue_token("web_demo_alice")
    await app.auth.verify(issued.access_token)
    recent = await app.conversations.recent("web_demo_alice")
    own_redis.pause()
    try:
        profile = await bounded(app.profiles.get("web_demo_alice"))
        assert profile is not None
        assert profile.user_id == "web_demo_alice"
        assert (await bounded(app.auth.verify(issued.access_token))).user_id == "web_demo_alice"
        added = await bounded(
            app.conversations.add_message(recent[0].id, MessageCreate(role="user", content="?"))
        )
        assert added.message_count == recent[0].message_count + 1
        assert (await bounded(app.menu.get_menu())).items
        assert await bounded(app.sessions.get("chat-session-1")) is None
        with within_bound(), pytest.raises(UnavailableError):
            await app.sessions.set("chat-session-1", {"step": 1})
    finally:
        own_redis.resume()
    assert app.cache.stats()["user:profile"].errors > 0


async def test_an_unreachable_redis_from_the_start_works(postgres_database: str) -> None:
    app = await open_app(postgres_database, f"redis://127.0.0.1:{free_port()}/0")
    try:
        profile = await bounded(app.profiles.get_or_create(user_id="web_demo_alice"))
        assert profile.total_conversations > 0
        assert await bounded(app.profiles.get("web_demo_alice")) == profile
        assert (await bounded(app.menu.get_menu())).items
        assert await bounded(app.menu.get_context())
        issued = await bounded(app.auth.issue_token("web_demo_alice"))
        assert (await bounded(app.auth.verify(issued.access_token))).user_id == "web_demo_alice"
        await bounded(app.auth.logout(issued.access_token))
        with pytest.raises(AuthenticationError, match="revoked"):
            await bounded(app.auth.verify(issued.access_token))
        conversation = await bounded(
            app.conversations.create(ConversationCreate(user_id="web_demo_alice", channel="api"))
        )
        await bounded(
            app.conversations.add_message(conversation.id, MessageCreate(role="user", content="x"))
        )
        assert (await bounded(app.conversations.get(conversation.id))).message_count == 1  # type: ignore[union-attr]
        assert (await bounded(app.analytics.today())).events_total > 0
        assert (await bounded(app.analytics.top_products())) is not None
        stats = app.cache.stats()
        assert stats["user:profile"].errors > 0
        assert sum(s.hits for s in stats.values()) == 0
    finally:
        await empty_all_tables(app.engine)
        await app.close()


# --- Redis back ----------------------------------------------------------------------------


async def test_the_cache_is_used_again_once_redis_is_back(
    app: Runtime, own_redis: RedisProcess, tmp_path: Path
) -> None:
    issued = await app.auth.issue_token("web_demo_alice")
    await app.profiles.get("web_demo_alice")
    own_redis.stop()
    await bounded(app.profiles.get("web_demo_alice"))
    await bounded(app.auth.verify(issued.access_token))
    assert app.cache.stats()["user:profile"].errors > 0

    restarted = RedisProcess(port=own_redis.port, directory=tmp_path).start()
    try:
        await app.profiles.get("web_demo_alice")  # reconnects, loads, caches
        await app.auth.verify(issued.access_token)
        app.cache.reset_stats()
        assert await app.profiles.get("web_demo_alice") is not None
        assert (await app.auth.verify(issued.access_token)).user_id == "web_demo_alice"
        stats = app.cache.stats()
        assert (stats["user:profile"].hits, stats["user:profile"].errors) == (1, 0)
        assert (stats["auth:token"].hits, stats["auth:session"].hits) == (1, 1)
    finally:
        restarted.stop()


async def test_a_logout_during_an_outage_holds_when_redis_comes_back_with_its_data(
    app: Runtime, own_redis: RedisProcess, tmp_path: Path
) -> None:
    issued = await app.auth.issue_token("web_demo_alice")
    await app.auth.verify(issued.access_token)  # identity and session cached in Redis
    client = Redis.from_url(own_redis.url)
    client.shutdown(save=True)  # Redis goes away, its data saved to dump.rdb
    client.close()
    own_redis.stop()

    await bounded(app.auth.logout(issued.access_token))  # revoked in the database only

    restarted = RedisProcess(port=own_redis.port, directory=tmp_path).start()
    try:
        with pytest.raises(AuthenticationError, match="revoked"):
            await app.auth.verify(issued.access_token)
        # The missed invalidation is delivered to the recovered Redis, not forgotten.
        for _ in range(60):
            if (await app.cache.report()).breaker.pending_invalidations == 0:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.1)
        session_key = app.cache.full_key(app.namespaces.auth_session, str(issued.session_id))
        assert await app.cache.backend.get(session_key) is None
    finally:
        restarted.stop()
